"""Peak memory of a full online replay: 2^20 transitions (BTR's size), K=80, 512-d fp16 embeddings.

The ring lives as in a real run: frames and embeddings in memory-mapped files inside a run directory
(``ReplayConfig.ring_dir``), priorities in a sum tree. The ring is filled with one vector step after
another (64 envs, episodes of ``--episode`` steps) and then sampled; printed: peak RSS of the process
(``ru_maxrss``), and at the end its anonymous memory (heap: what cannot be paged out) and its file-backed
resident pages (the mapped ring: page cache the kernel can drop under pressure). BTR keeps the same
frames in process memory (about 15 GB, BTR paper).

Usage: python benchmarks/replay_memory.py [--capacity 1048576] [--num-envs 64] [--dir /tmp/ring]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from rise_agent.network import NetworkConfig
from rise_agent.replay import Replay, ReplayConfig


def status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--capacity", type=int, default=2**20)
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--k", type=int, default=80)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--episode", type=int, default=1000, help="steps per synthetic episode")
    p.add_argument("--dir", default=None, help="where the ring files go (default: a temp folder)")
    a = p.parse_args()
    folder = Path(a.dir or tempfile.mkdtemp(prefix="rise-ring-"))
    cfg = ReplayConfig(capacity=a.capacity, ring_dir=str(folder))
    net = NetworkConfig(n_actions=6, context_len=a.k, embed_dim=a.dim)
    replay = Replay(cfg, (84, 84), a.dim, num_envs=a.num_envs, network=net)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (a.num_envs, 84, 84), dtype=np.uint8)
    emb = torch.randn(a.num_envs, a.dim).half()
    actions = np.zeros(a.num_envs, np.int64)
    replay.add_first(obs, emb)
    steps = a.capacity // a.num_envs
    t0 = time.perf_counter()
    for t in range(1, steps + 1):
        ended = np.full(a.num_envs, t % a.episode == 0)
        step = SimpleNamespace(
            obs=obs, reward=np.ones(a.num_envs, np.float32), terminated=ended, truncated=np.zeros_like(ended),
            is_first=np.full(a.num_envs, t % a.episode == 1 and t > 1),
        )  # fmt: skip
        replay.add(actions, step, emb)
    fill = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        replay.sample(256, rng)
    sample_ms = (time.perf_counter() - t0) / 20 * 1000
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    anon_gb, file_gb = status_kb("RssAnon") / 2**20, status_kb("RssFile") / 2**20
    disk_gb = sum(f.stat().st_size for f in folder.iterdir()) / 2**30
    print(
        f"{len(replay):,} transitions in replay ({replay.online_transitions:,} sampleable), ring files {disk_gb:.2f} GB"
    )
    print(f"fill {fill:.0f} s, sample(256) {sample_ms:.1f} ms")
    print(f"peak RSS {peak_gb:.2f} GB (goal <= 12; BTR about 15): anonymous {anon_gb:.2f} GB, "
          f"file-backed (mapped ring) {file_gb:.2f} GB at the end")  # fmt: skip
    if a.dir is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
