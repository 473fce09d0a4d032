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
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rise_data.envs import Step

ROOT = Path(__file__).resolve().parents[1]


def load_revision(rev: str):
    """rise_agent/replay.py as it was at ``rev`` (a single module then), imported under another name."""
    src = subprocess.run(
        ["git", "show", f"{rev}:rise_agent/replay.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "replay_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("replay_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["replay_before"] = mod
    spec.loader.exec_module(mod)
    return mod


def fill(replay, envs: int, steps: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    replay.add_first(rng.integers(0, 256, (envs, 84, 84), dtype=np.uint8), torch.randn(envs, dim).half())
    left = rng.integers(50, 400, envs)
    done = np.zeros(envs, bool)
    for _ in range(steps):
        first = done
        left = np.where(first, rng.integers(50, 400, envs), left - 1)
        term = (left == 0) & ~first
        obs = rng.integers(0, 256, (envs, 84, 84), dtype=np.uint8)
        step = Step(obs, None, rng.normal(size=envs).astype(np.float32), term, np.zeros(envs, bool), first)
        replay.add(rng.integers(0, 6, envs), step, torch.randn(envs, dim).half())
        done = term


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

    before = load_revision(args.rev)
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
