"""Replay.sample at batch 256, K=80: the online ring in RAM vs in memory-mapped files, same data, one run.

Both replays get the same online steps (E envs, random 84x84 frames, 512-d fp16 embeddings, episodes of
random length) until the ring is full, then ``sample`` is timed on CPU (median of ``--reps`` calls after
warm-up, the variants' calls interleaved so load drift hits all alike). Printed: ms per call and the ratio
to the ring in RAM, then one JSON line with the ratios.
Usage: python benchmarks/replay_sample.py [--envs 16] [--rows-per-env 2048] [--reps 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from _common import fill

from rise_agent.network import NetworkConfig
from rise_agent.replay import Replay, ReplayConfig


def make_replay(capacity: int, k: int, dim: int, envs: int, ring_dir: str | None) -> Replay:
    """A replay of ``envs`` online envs; the network config owns the windows (S = 4, K = ``k``)."""
    net = NetworkConfig(n_actions=6, embed_dim=dim, frame_stack=4, context_len=k)
    return Replay(ReplayConfig(capacity=capacity, ring_dir=ring_dir), (84, 84), dim, envs, network=net)


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
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--rows-per-env", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--k", type=int, default=80)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    steps = args.rows_per_env + 100  # the ring wraps once
    with tempfile.TemporaryDirectory() as tmp:
        replays = {}
        for name, ring_dir in (("ring in RAM", None), ("ring files (ring_dir)", tmp)):
            replays[name] = make_replay(args.envs * args.rows_per_env, args.k, args.dim, args.envs, ring_dir)
            fill(replays[name], args.envs, steps, args.dim, seed=1)
        results = time_interleaved(replays, args.batch, args.reps)
        del replays
    print(
        f"Replay.sample, batch {args.batch}, K={args.k}, D={args.dim}, {args.envs} envs x {args.rows_per_env}"
    )
    ref = next(iter(results.values()))
    for name, ms in results.items():
        print(f"  {name:28s} {ms:8.2f} ms/call   ratio {ms / ref:5.2f}")
    print(json.dumps({"ms": results, "ratios": {name: ms / ref for name, ms in results.items()}}))


if __name__ == "__main__":
    main()
