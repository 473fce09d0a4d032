"""Memory probe: does the context stream remember a cue shown `delay` steps earlier?

rise/CueMemory-v0 shows a cue (left or right square) on the first frame, then `delay` frames of noise, then
asks: the matching action earns +1, the other -1. Random-policy episodes are collected, every frame is
embedded once with the frozen `downsample` encoder, and an agent is pretrained offline for each K. The
success rate is measured by greedy evaluation episodes in the env. With K > delay the cue is inside the
context window; with K = 0 (plain BTR, 4-frame stack) it never is, so success stays at chance (50 %).

Usage: python pipelines/memory_probe.py [--delay 30] [--ks 40 0] [--updates 1500] [--out runs/probe]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rise_agent.learner import LearnerConfig
from rise_agent.network import NetworkConfig
from rise_agent.replay import ReplayConfig
from rise_agent.train import TrainConfig, train
from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode

SCREEN = 42  # the probe needs no Atari resolution: a 42x42 agent view keeps CPU runs to minutes
LR = 1e-3  # faster than BTR's 1e-4 for this tiny task; the same for every K
PER_ALPHA = 0.6  # only 1 transition in 32 carries reward here: prioritise it harder than BTR's 0.2


def run_probe(
    out: Path, delay: int, ks: list[int], updates: int, episodes: int, seed: int = 0, eval_episodes: int = 100
) -> dict:
    """Collect, encode, pretrain one agent per K, evaluate; returns {K: success rate}."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    store = str(out / "probe.zarr")
    collect(
        CollectConfig(
            "rise/CueMemory-v0",
            store,
            episodes=episodes,
            envs=8,
            seed=seed,
            env_options={"delay": delay},
            screen_size=SCREEN,
            progress=False,
        )
    )
    encode(EncodeConfig(store=store, encoder="downsample", progress=False))
    results = {}
    for k in ks:
        config = TrainConfig(
            run_dir=str(out / f"k{k}"),
            store=store,
            updates=updates,
            batch_size=128,
            cql_alpha=0.0,  # random data covers both answers: no need to be conservative here
            eval_episodes=eval_episodes,
            log_every=100,
            checkpoint_every=10**9,
            seed=seed,
            progress=False,
            network=NetworkConfig(
                n_actions=3,
                context_len=k,
                frame_hw=(SCREEN, SCREEN),
                impala_channels=(8, 16, 16),
                hidden=64,
                lstm_hidden=64,
            ),
            learner=LearnerConfig(target_update=100, lr=LR),
            replay=ReplayConfig(per_alpha=PER_ALPHA),
        )
        result = train(config)
        returns = result["eval"]["returns"]
        results[k] = sum(r > 0 for r in returns) / len(returns)
        print(f"K={k}: success {results[k]:.1%} over {len(returns)} evaluation episodes", flush=True)
    (out / "results.json").write_text(
        json.dumps({"delay": delay, "updates": updates, "success": results}, indent=2)
    )
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--delay", type=int, default=30)
    p.add_argument("--ks", type=int, nargs="+", default=[40, 0])
    p.add_argument("--updates", type=int, default=1500)
    p.add_argument("--episodes", type=int, default=400)
    p.add_argument("--out", default="runs/probe")
    args = p.parse_args()
    run_probe(Path(args.out), args.delay, args.ks, args.updates, args.episodes)


if __name__ == "__main__":
    main()
