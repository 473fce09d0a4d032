"""Replay.add on a wrapped ring: the sum-tree updates filtered to sampleable rows vs all named rows, one run.

Two replays get the same online steps (E envs, random 84x84 frames, fp16 embeddings, random episode
lengths) until the ring has wrapped; then ``add`` is timed on both, calls interleaved so load drift hits
both alike. "before" is the unfiltered ``_apply`` (every row a wrapped write invalidates, ~lookback per env,
goes to the sum tree: ``OnlineRing.write`` and ``_apply`` of git revision ``--rev``), "after" the working
tree's (only rows that were sampleable). The trees are compared
leaf for leaf at the end (the filter is exact). Ends with one JSON line of ratios.
Usage: python benchmarks/replay_add.py [--envs 64] [--rows-per-env 300] [--k 80] [--reps 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
import types

import numpy as np
import torch
from _common import module_at

from rise_agent.network import NetworkConfig
from rise_agent.replay import Replay, ReplayConfig
from rise_data.envs import Step


def steps(envs: int, n: int, dim: int, seed: int, hw: int = 84):
    rng = np.random.default_rng(seed)
    left, done = rng.integers(50, 400, envs), np.zeros(envs, bool)
    for _ in range(n):
        first = done
        left = np.where(first, rng.integers(50, 400, envs), left - 1)
        term = (left == 0) & ~first
        obs = rng.integers(0, 256, (envs, hw, hw), dtype=np.uint8)
        step = Step(obs, None, rng.normal(size=envs).astype(np.float32), term, np.zeros(envs, bool), first)
        yield rng.integers(0, 6, envs), step, torch.randn(envs, dim).half()
        done = term


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="e3571c5", help="the revision before the filter")
    ap.add_argument("--envs", type=int, default=64)
    ap.add_argument("--rows-per-env", type=int, default=300)
    ap.add_argument("--k", type=int, default=80)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--obs-hw", type=int, default=84, help="frame side (smaller: BTR's 2^20 rows fit in RAM)")
    ap.add_argument(
        "--ring-files",
        action="store_true",
        help="rings in files with embeddings mirrored (the GPU layout, on this device): before mirrors "
        "every write, after at checkpoints",
    )
    ap.add_argument("--reps", type=int, default=40)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = ReplayConfig(capacity=a.envs * a.rows_per_env)
    tmp = tempfile.TemporaryDirectory()
    if a.ring_files:
        from rise_agent.replay import OnlineRing

        OnlineRing.map_cpu_embeddings = False
    replays = {
        name: Replay(
            dataclasses.replace(cfg, ring_dir=f"{tmp.name}/{name}" if a.ring_files else None),
            (a.obs_hw, a.obs_hw),
            a.dim,
            a.envs,
            network=NetworkConfig(n_actions=6, context_len=a.k, embed_dim=a.dim),
        )
        for name in ("before", "after")
    }
    old, ring = (
        module_at(a.rev, "rise_agent/replay/ring.py", "ring_before").OnlineRing,
        replays["before"].ring,
    )
    ring._write, ring._apply = types.MethodType(old.write, ring), types.MethodType(old._apply, ring)
    first = np.zeros((a.envs, a.obs_hw, a.obs_hw), np.uint8)
    for r in replays.values():
        r.add_first(first, torch.zeros(a.envs, a.dim).half())
    times: dict[str, list[float]] = {name: [] for name in replays}
    for i, (act, step, emb) in enumerate(steps(a.envs, a.rows_per_env + 20 + a.reps, a.dim, 0, a.obs_hw)):
        for name, r in replays.items():
            t = time.perf_counter()
            r.add(act, step, emb)
            if i >= a.rows_per_env + 20:  # wrapped: every write invalidates old rows
                times[name].append(time.perf_counter() - t)
    ms = {name: 1000 * float(np.median(t)) for name, t in times.items()}
    same = np.array_equal(replays["before"].ring.sampler.tree.nodes, replays["after"].ring.sampler.tree.nodes)
    print(f"Replay.add ({'ring files, mirrored embeddings' if a.ring_files else 'RAM'}), wrapped ring, {a.envs} envs x {a.rows_per_env} rows of {a.obs_hw}x{a.obs_hw}, K={a.k}: "
          f"before {ms['before']:.2f} ms, after {ms['after']:.2f} ms, trees equal: {same}")  # fmt: skip
    ratios = {"add_speedup": round(ms["before"] / ms["after"], 3), "trees_equal": float(same)}
    print(
        json.dumps(
            {"ratios": ratios, "machine": f"cpu ({os.cpu_count()} cores), load {os.getloadavg()[0]:.2f}"}
        )
    )


if __name__ == "__main__":
    main()
