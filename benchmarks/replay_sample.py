"""Replay.sample at batch 256, K=80: a git revision's replay vs the working tree's, same data, one run.

Both replays get the same online steps (E envs, random 84x84 frames, 512-d fp16 embeddings, episodes of
random length) until the ring is full, then ``sample`` is timed on CPU (median of ``--reps`` calls after
warm-up, the variants' calls interleaved so load drift hits all alike). The working tree is also timed
with its ring in memory-mapped files (``ring_dir``) when its ReplayConfig has that field. Printed: ms per
call and the ratio to the revision's.
Usage: python benchmarks/replay_sample.py [--rev ed5ce4f] [--envs 16] [--rows-per-env 2048] [--reps 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import tempfile
import time

import numpy as np
import torch
from _common import fill, module_at


def make_replay(mod, capacity: int, windows: dict, extra: dict, dim: int, envs: int):
    """``mod``'s Replay; revisions before the network owned the windows took them in ReplayConfig, later
    ones as keywords, the working tree as the NetworkConfig that owns them."""
    import inspect

    if "context_len" in {f.name for f in dataclasses.fields(mod.ReplayConfig)}:
        return mod.Replay(mod.ReplayConfig(capacity=capacity, **windows, **extra), (84, 84), dim, envs)
    if "network" in inspect.signature(mod.Replay).parameters:
        from rise_agent.network import NetworkConfig

        net = NetworkConfig(n_actions=6, embed_dim=dim, **windows)
        return mod.Replay(mod.ReplayConfig(capacity=capacity, **extra), (84, 84), dim, envs, network=net)
    return mod.Replay(mod.ReplayConfig(capacity=capacity, **extra), (84, 84), dim, envs, **windows)


def time_interleaved(replays: dict, batch: int, reps: int) -> dict[str, float]:
    """Median ms per ``sample`` call of each replay, calls interleaved so load drift hits all alike."""
    rngs = {name: np.random.default_rng(0) for name in replays}
    for name, rp in replays.items():
        for _ in range(3):
            rp.sample(batch, rngs[name])
    times: dict[str, list[float]] = {name: [] for name in replays}
    for _ in range(reps):
        for name, rp in replays.items():
            t = time.perf_counter()
            b = rp.sample(batch, rngs[name])
            times[name].append(time.perf_counter() - t)
            rp.update_priorities(b.index, rngs[name].random(batch))
    return {name: 1000 * float(np.median(t)) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="ed5ce4f")
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--rows-per-env", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--k", type=int, default=80)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import rise_agent.replay as now

    # the revision imports its helpers from where they lived then (since moved by the layout change)
    sys.modules.setdefault("rise_agent.returns", importlib.import_module("rise_data.windows"))
    sys.modules.setdefault("rise_agent.sumtree", importlib.import_module("rise_agent.replay.sumtree"))
    before = module_at(args.rev, "rise_agent/replay.py", "replay_before")
    windows = dict(frame_stack=4, context_len=args.k)
    steps = args.rows_per_env + 100  # the ring wraps once
    with tempfile.TemporaryDirectory() as tmp:
        variants = [(f"{args.rev} (RAM)", before, {}), ("working tree (RAM)", now, {})]
        if "ring_dir" in {f.name for f in dataclasses.fields(now.ReplayConfig)}:
            variants.append(("working tree (ring files)", now, {"ring_dir": tmp}))
        replays = {}
        for name, mod, extra in variants:
            replays[name] = make_replay(
                mod, args.envs * args.rows_per_env, windows, extra, args.dim, args.envs
            )
            fill(replays[name], args.envs, steps, args.dim, seed=1)
        results = time_interleaved(replays, args.batch, args.reps)
        del replays
    print(
        f"Replay.sample, batch {args.batch}, K={args.k}, D={args.dim}, {args.envs} envs x {args.rows_per_env}"
    )
    ref = next(iter(results.values()))
    for name, ms in results.items():
        print(f"  {name:28s} {ms:8.2f} ms/call   ratio {ms / ref:5.2f}")


if __name__ == "__main__":
    main()
