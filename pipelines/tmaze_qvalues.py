"""What a trained agent's Q-values say along the T-maze: walk the corridor forward and print Q per action.

Loads ``rise-agent train``'s checkpoint of a rise/TMaze-v0 (or TMazeVisible) run, plays a scripted
episode per env (forward to the junction, then the correct turn), and at every cell prints the mean
over ``--taus`` IQN quantiles (noise off) of Q(forward), Q(left) and Q(right), which one the greedy
policy picks, and the gap Q(forward) - max Q(turn) in the corridor (forward - max Q(answer) at the
junction, where forward is the no-op). A frozen policy shows as a no-op valued above the move that
makes progress: a negative gap.

Usage: python pipelines/tmaze_qvalues.py runs/learning/tmaze/k24-seed0/checkpoint.pt [--episodes 4]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rise_agent.acting.actor import Actor
from rise_agent.evaluation.evaluate import load_agent
from rise_agent.network import disable_noise
from rise_data.collect.rollout import Rollout
from rise_data.envs import make_env
from rise_data.envs.tmaze import FORWARD, LEFT


def walk(checkpoint: str, episodes: int, taus: int, seed: int) -> list[dict]:
    """One row per (episode, cell): position, cue, Q per action (mean over quantiles), greedy action."""
    network, encoder, meta = load_agent(checkpoint)
    env = make_env(meta["env"], num_envs=1)
    rollout, rows = Rollout(env), []
    actor = Actor(network, encoder, 1, "cpu", n_tau=taus)
    step = rollout.reset(seed=seed)
    rollout.file(step)
    inner = env.env.env.envs[0].unwrapped  # the one TMazeEnv: its position and cue label the rows
    done = 0
    with torch.no_grad(), disable_noise(network):
        while done < episodes:
            actor.observe(step)
            ctx, mask = actor.context()
            q = network.q_values(actor.frames(), ctx, mask, taus)[0].numpy()
            pos, cue = inner._pos, inner._cue
            rows.append({"episode": done, "position": pos, "cue": cue, "q": q, "greedy": int(q.argmax())})
            at_junction = pos == inner.length
            rollout.send(np.array([LEFT + cue if at_junction else FORWARD]))
            step = rollout.recv()
            done += len(rollout.file(step))
    env.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--taus", type=int, default=64)
    p.add_argument("--seed", type=int, default=1000)
    a = p.parse_args()
    names = ("forward", "left", "right")
    print("| episode | cell | cue | Q forward | Q left | Q right | greedy | forward - max turn |")
    print("|---|---|---|---|---|---|---|---|")
    for r in walk(a.checkpoint, a.episodes, a.taus, a.seed):
        q = " | ".join(f"{v:.3f}" for v in r["q"])
        gap = r["q"][FORWARD] - r["q"][FORWARD + 1 :].max()
        print(f"| {r['episode']} | {r['position']} | {r['cue']} | {q} | {names[r['greedy']]} | {gap:+.3f} |")


if __name__ == "__main__":
    main()
