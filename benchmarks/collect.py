"""Collection rate vs raw vector-env stepping, measured in one run.

raw:     the family's raw vector env stepping with random actions (Atari: ale_py AtariVectorEnv in the RGB
         config collect uses; gymnasium families: SyncVectorEnv and AsyncVectorEnv, both measured), nothing kept
env:     rise's make_env stepping (raw + the 84x84 gray agent observation derived per step)
collect: `rise-data collect` end to end into a fresh store (buffers, compression, writes, commits);
         its ratio is to the raw rate of the vectorization make_env picks (``auto``); run with and
         without frames
zstd:    the rows make_env returned, compressed alone as the store chunks them (StoreLayout)
The last line is one JSON object: ``collect_overhead`` = collect wall / (raw wall + zstd alone) with frames
(goal <= 1.2), ``collect_raw_no_frames`` = collect --no-frames / raw (goal >= 0.8).

Usage: python benchmarks/collect.py [--env ALE/Pong-v5] [--envs 8] [--steps 20000] [--no-frames] [--durability fast]
       python benchmarks/collect.py --env MiniGrid-MemoryS7-v0 --envs 4 --steps 4000   # pip install -e '.[envs]'
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from rise_data.collect import CollectConfig, collect
from rise_data.envs import env_spec, make_env


def step_rate(env, steps: int, raw: bool, keep: list | None = None) -> float:
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while n < steps:
        a = rng.integers(env.n_actions, size=env.num_envs)
        out = env.env.step(a) if raw else env.step(a)
        if keep is not None:
            keep.append((out.obs, out.frame))
        n += env.num_envs
    return n / (time.perf_counter() - t0)


def compress_seconds(kept: list, frames: bool) -> float:
    """Seconds to zstd the kept rows as a store chunks them (level and rows per chunk of StoreLayout)."""
    from numcodecs import Zstd

    from rise_data.store.format import StoreLayout

    layout = StoreLayout()
    codec = Zstd(level=layout.zstd_level)
    arrays = [np.concatenate([o for o, _ in kept])]
    if frames and kept[0][1] is not None:
        arrays.append(np.concatenate([f for _, f in kept]))
    t0 = time.perf_counter()
    for arr in arrays:
        rows = layout.image_chunk_rows(arr.shape[1:])
        for i in range(0, len(arr), rows):
            codec.encode(np.ascontiguousarray(arr[i : i + rows]))
    return time.perf_counter() - t0


def collect_rate(args, frames: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = collect(
            CollectConfig(
                args.env,
                os.path.join(tmp, "b.zarr"),
                steps=args.steps,
                num_envs=args.envs,
                frames=frames,
                wrappers=args.wrapper,
                durability=args.durability,
                progress=False,
            )
        )
    return out["steps"] / out["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--no-frames", action="store_true")
    p.add_argument(
        "--durability", choices=("safe", "fast"), default="safe", help="collect's commits (fsync or not)"
    )
    p.add_argument("--wrapper", action="append", default=[], help="gymnasium wrapper NAME[=ARG], repeatable")
    args = p.parse_args()
    spec = env_spec(args.env, wrappers=args.wrapper)
    rates = {}
    for mode in ("sync", "async") if spec["family"] != "atari" else ("auto",):
        env = make_env(spec, num_envs=args.envs, vectorization=mode)
        step_rate(env, args.envs * 20, raw=True)  # warm-up
        rates[mode] = step_rate(env, args.steps, raw=True)
        env.close()
    env = make_env(spec, num_envs=args.envs)
    auto = "async" if type(env.env).__name__ == "GymVector" and hasattr(env.env.env, "step_wait") else "sync"
    raw = rates.get("auto") or rates[auto]
    kept: list = []
    derived = step_rate(env, args.steps, raw=False, keep=kept)
    env.close()
    rate = collect_rate(args, frames=not args.no_frames)
    bare = collect_rate(args, frames=False) if not args.no_frames else rate
    t_zstd = compress_seconds(kept, frames=not args.no_frames)
    n = sum(len(o) for o, _ in kept)
    wall_collect, wall_raw = args.steps / rate, args.steps / raw
    overhead = wall_collect / (wall_raw + t_zstd * args.steps / n)
    print(
        f"machine: {os.cpu_count()} cores; env {args.env}, {args.envs} envs, {args.steps} steps, frames={'off' if args.no_frames else 'on'}"
    )
    if "sync" in rates:
        print(f"raw SyncVectorEnv       : {rates['sync']:9.0f} steps/s")
        print(
            f"raw AsyncVectorEnv      : {rates['async']:9.0f} steps/s   async/sync {rates['async'] / rates['sync']:.3f}"
            f"  (make_env auto picks {auto})"
        )
    print(f"raw vector-env stepping : {raw:9.0f} steps/s")
    print(f"make_env (+ agent obs)  : {derived:9.0f} steps/s   ratio to raw {derived / raw:.3f}")
    print(f"rise-data collect       : {rate:9.0f} steps/s   ratio to raw {rate / raw:.3f}")
    print(f"collect --no-frames     : {bare:9.0f} steps/s   ratio to raw {bare / raw:.3f}  (goal >= 0.80)")
    print(f"zstd of the same rows   : {n / t_zstd:9.0f} steps/s alone")
    print(f"collect wall / (raw + zstd alone) {overhead:.3f}  (goal <= 1.2)")
    ratios = {
        "collect_overhead": round(overhead, 3),
        "collect_raw_no_frames": round(bare / raw, 3),
        "collect_raw": round(rate / raw, 3),
    }
    machine = f"cpu ({os.cpu_count()} cores), load {os.getloadavg()[0]:.2f}"
    print(json.dumps({"ratios": ratios, "machine": machine}))


if __name__ == "__main__":
    main()
