"""Memory probe: does the context stream remember a cue shown `delay` steps earlier?

rise/CueMemory-v0 shows a cue (left or right square) on the first frame, then `delay` frames of noise, then
asks: the matching action earns +1, the other -1. Random-policy episodes are collected, every frame is
embedded once with the frozen `downsample` encoder, and an agent (the full BTR/RISE learner, replay and
actor) is pretrained offline for each K. Success is measured by evaluation episodes in the env. With
K > delay the cue is inside the context window; with K = 0 (plain BTR, 4-frame stack) it never is, so
success stays at chance (50 %).

Why the probe's target differs from BTR's in one setting, n = 1 (measured with this pipeline on 2 CPU cores,
delay 10, K = 16; docs/results.md, "Memory probe"): with n = 1 and BTR's gamma 0.997 and PER alpha 0.2 the
cue is learned by 200 updates on seeds 0, 1 and 2; with BTR's n = 3, all else equal, the agent stays on a
fixed answer through 600 updates. Only the query transition (1 row in delay + 2) says anything about the
cue, and with n = 3 the rows just before it carry the uncorrected 3-step return of the random behaviour
policy: its random +-1 answer, on states almost identical to the query, a target that depends on neither
the cue nor the action. Online (pipelines/learning.py) the behaviour policy is the agent's own and BTR's
n = 3 learns the same task.

Usage: python pipelines/memory_probe.py [--seeds 0 1 2] [--delay 10] [--ks 16 0] [--updates 600] [--n-step 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rise_agent.learner import LearnerConfig
from rise_agent.network import NetworkConfig
from rise_agent.replay import ReplayConfig
from rise_agent.training.train import TrainConfig, train
from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode

CHANCE = 0.5  # the cue is left or right with equal probability


@dataclass(frozen=True)
class Probe:
    """One probe run: task, data and training sizes (the claim is `delay`; the rest are sizes)."""

    delay: int = 10  # steps between the cue and the question
    ks: tuple[int, ...] = (16, 0)  # context lengths to compare; K > delay holds the cue, K = 0 is BTR
    episodes: int = 300  # random-policy episodes collected (each has exactly one question)
    updates: int = 600  # offline gradient steps per K
    batch_size: int = 128
    eval_every: int = 0  # gradient steps between evaluations (0: only at the end); the curve's points
    eval_episodes: int = 100
    screen: int = 24  # agent view; the probe needs no Atari resolution, and the CNN dominates CPU time
    seed: int = 0
    n_step: int = 1  # BTR's 3 settles on a fixed answer over random-policy data (module docstring)
    context_adam_eps: float = LearnerConfig.context_adam_eps


def make_store(out: Path, probe: Probe) -> str:
    """Collect the probe's random-policy episodes into ``out/probe.zarr`` and embed them once."""
    store = str(out / "probe.zarr")
    collect(
        CollectConfig(
            "rise/CueMemory-v0",
            store,
            episodes=probe.episodes,
            num_envs=8,
            seed=probe.seed,
            env_options={"delay": probe.delay},
            screen_size=probe.screen,
            progress=False,
        )
    )
    encode(EncodeConfig(store=store, encoder="downsample", progress=False))
    return store


def train_config(run_dir: Path, store: str, k: int, probe: Probe) -> TrainConfig:
    """The TrainConfig of one K; every setting that is not BTR's says why."""
    return TrainConfig(
        run_dir=str(run_dir),
        store=store,
        updates=probe.updates,
        batch_size=probe.batch_size,
        cql_alpha=0.0,  # random data covers both answers: no need to be conservative here
        eval_every=probe.eval_every,
        eval_episodes=probe.eval_episodes,
        log_every=probe.eval_every or 50,  # training evaluates only between logging blocks
        checkpoint_every=10**9,
        seed=probe.seed,
        progress=False,
        network=NetworkConfig(
            n_actions=3,
            context_len=k,
            impala_channels=(8, 16, 16),  # a small CNN: the current frame only has to show "question or not"
            hidden=64,
            lstm_hidden=64,
        ),
        learner=LearnerConfig(
            lr=1e-3,  # faster than BTR's 1e-4 for this tiny task; the same for every K
            target_update=100,  # 600 updates: BTR's 500 would copy the target once
            context_adam_eps=probe.context_adam_eps,
        ),
        replay=ReplayConfig(n_step=probe.n_step),  # BTR's gamma and PER alpha
    )


def success_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(gradient steps, success rate) of every evaluation of a run, from its eval.csv.

    Every probe episode returns exactly +1 (right answer) or -1 (wrong), so success = (1 + mean) / 2.
    """
    with (run_dir / "eval.csv").open() as f:
        # the final evaluation repeats the last periodic one when they fall on the same step: keep one
        points = {int(r["updates"]): (1.0 + float(r["mean"])) / 2.0 for r in csv.DictReader(f)}
    return sorted(points.items())


def run_probe(out: Path, probe: Probe) -> dict[int, dict]:
    """Collect, encode, pretrain one agent per K, evaluate; ``{K: {success, curve, wall_s}}``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    store = make_store(out, probe)
    results: dict[int, dict] = {}
    for k in probe.ks:
        t0 = time.time()
        result = train(train_config(out / f"k{k}", store, k, probe))
        returns = result["eval"]["returns"]
        success = sum(r > 0 for r in returns) / len(returns)
        results[k] = {
            "success": success,
            "curve": success_curve(out / f"k{k}"),
            "wall_s": round(time.time() - t0, 1),
        }
        print(
            f"seed {probe.seed} K={k}: success {success:.0%} over {len(returns)} evaluation episodes "
            f"after {probe.updates} updates ({results[k]['wall_s']:.0f} s)",
            flush=True,
        )
    (out / "results.json").write_text(json.dumps({"probe": asdict(probe), "results": results}, indent=2))
    return results


def plot_curves(results: dict[int, dict], path: Path, title: str) -> Path:
    """Success rate vs gradient steps for every K in one PNG, with the chance line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for k, res in sorted(results.items(), reverse=True):
        steps, success = zip(*res["curve"], strict=True)
        label = f"RISE, K={k}" if k else "K=0 (plain BTR: 4-frame stack)"
        ax.plot(steps, [100 * s for s in success], "o-", label=label)
    ax.axhline(
        100 * CHANCE,
        color="gray",
        linestyle="--",
        label="chance (50 %); a fixed answer scores its cue's share",
    )
    ax.set_xlabel("gradient steps (offline pretraining)")
    ax.set_ylabel("success over evaluation episodes (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--delay", type=int, default=Probe.delay)
    p.add_argument("--ks", type=int, nargs="+", default=list(Probe.ks))
    p.add_argument("--updates", type=int, default=Probe.updates)
    p.add_argument("--episodes", type=int, default=Probe.episodes)
    p.add_argument("--n-step", type=int, default=Probe.n_step, help="3 is BTR's (the isolation runs)")
    p.add_argument("--context-adam-eps", type=float, default=Probe.context_adam_eps)
    p.add_argument("--eval-every", type=int, default=Probe.eval_every, help="updates between evaluations")
    p.add_argument("--out", default="runs/probe")
    args = p.parse_args()
    rows = []
    for seed in args.seeds:
        probe = Probe(
            delay=args.delay,
            ks=tuple(args.ks),
            updates=args.updates,
            episodes=args.episodes,
            seed=seed,
            n_step=args.n_step,
            context_adam_eps=args.context_adam_eps,
            eval_every=args.eval_every,
        )
        for k, res in run_probe(Path(args.out) / f"seed{seed}", probe).items():
            rows.append((seed, k, res["success"], res["wall_s"]))
    print("\n| seed | K | success | wall time |\n|---|---|---|---|")
    for seed, k, success, wall in rows:
        print(f"| {seed} | {k} | {success:.0%} | {wall:.0f} s |")


if __name__ == "__main__":
    main()
