"""Does a trained agent look at MiniGrid-Memory's cue, and does it use what it saw?

In MiniGrid-Memory the cue (a green key or ball) sits in the start room at (1, H//2 - 1); the agent
starts facing right, at a random x in the start room and hallway, so it has the cue in view at the start
only from x = 1 (a quarter of episodes on S7); from anywhere else it must turn around to see it. At the
end of the hallway it steps to the object matching the cue. So a policy's success splits into two
questions this script answers from its own episodes:

- **looks**: the share of episodes in which the cue was ever in the agent's view (``agent_sees``:
  in its 7x7 view and not occluded);
- **uses**: success among the episodes where it saw the cue, against those where it did not. A policy
  that remembers scores ~100 % on the first; one that walks and guesses scores ~50 % on both.
- **in reach**: among episodes that ended at an object (not on the time limit), the share whose last
  sight of the cue was at most ``--k`` steps before the end: only there can a context of K frames hold
  the cue when the answer is chosen (with ``--epsilon 1``: how much of uniform exploration's data can
  teach the answer at all).

Loads ``rise-agent train``'s checkpoint, plays ``--episodes`` episodes (greedy with the noise off, or
with ``--epsilon`` random actions: ``--epsilon 1`` shows what uniform exploration sees) and prints one
JSON line. Usage:
    python pipelines/minigrid_cue.py runs/learning/minigrid/k24-seed0/checkpoint.pt [--episodes 200]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from rise_agent.acting.actor import Actor
from rise_agent.evaluation.evaluate import load_agent
from rise_data.collect.rollout import Rollout
from rise_data.envs import make_env


def cue_cell(env: Any) -> tuple[int, int]:
    """Where MiniGrid-Memory's start-room object is (``MemoryEnv._gen_grid``)."""
    return 1, env.height // 2 - 1


def cue_seen(env: Any) -> bool:
    """Whether the unwrapped MemoryEnv's agent has the cue in its (occluded) view now."""
    return bool(env.agent_sees(*cue_cell(env)))


def summarise(episodes: list[dict], k: int) -> dict:
    """Looks, uses and in reach (module docstring); a share of no episode is None."""

    def share(rows: list[dict], test: Any) -> float | None:
        return round(sum(map(test, rows)) / len(rows), 3) if rows else None

    def won(e: dict) -> bool:
        return e["success"]

    seen = [e for e in episodes if e["seen"]]
    unseen = [e for e in episodes if not e["seen"]]
    ended = [e for e in episodes if not e["truncated"]]
    at_one = [e for e in episodes if e["start_x"] == 1]
    return {
        "episodes": len(episodes),
        "success": share(episodes, won),
        "cue_seen_share": share(episodes, lambda e: e["seen"]),
        "success_when_seen": share(seen, won),
        "success_when_unseen": share(unseen, won),
        "cue_in_reach_share": share(ended, lambda e: e["seen"] and e["length"] - e["last_seen"] <= k),
        "start_x1_share": share(episodes, lambda e: e["start_x"] == 1),
        "success_start_x1": share(at_one, won),
        "time_limit_share": share(episodes, lambda e: e["truncated"]),
        "mean_length": round(float(np.mean([e["length"] for e in episodes])), 1) if episodes else None,
    }


def play(checkpoint: str, episodes: int, seed: int, epsilon: float) -> list[dict]:
    """One dict per finished episode: start x, cue seen, success, length, truncated."""
    network, encoder, meta = load_agent(checkpoint)
    env = make_env(meta["env"], num_envs=1)
    inner = env.env.env.envs[0].unwrapped  # the one MemoryEnv: its state labels the episode
    rollout, actor = Rollout(env), Actor(network, encoder, 1, "cpu")
    rng, out, ep, t = np.random.default_rng(seed), [], {}, 0
    step = rollout.reset(seed=seed)
    with torch.no_grad():
        while len(out) < episodes:
            for f in rollout.file(step):
                out.append({**ep, "success": f.ret > 0, "length": f.length, "truncated": f.truncated})
            if step.is_first[0]:
                ep, t = {"start_x": int(inner.agent_pos[0]), "seen": False, "last_seen": -1}, 0
            if cue_seen(inner):
                ep["seen"], ep["last_seen"] = True, t
            t += 1
            actor.observe(step)
            rollout.send(actor.act(epsilon, rng, greedy_noise_off=True))
            step = rollout.recv()
    env.close()
    return out[:episodes]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--epsilon", type=float, default=0.0, help="share of uniformly random actions")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--k", type=int, default=24, help="context length for the in-reach share")
    a = p.parse_args()
    rows = play(a.checkpoint, a.episodes, a.seed, a.epsilon)
    print(json.dumps({"checkpoint": a.checkpoint, "epsilon": a.epsilon, "k": a.k, **summarise(rows, a.k)}))


if __name__ == "__main__":
    main()
