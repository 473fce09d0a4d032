"""Collection rate vs raw vector-env stepping, measured in one run.

raw:     the family's raw vector env stepping with random actions (Atari: ale_py AtariVectorEnv in the RGB
         config collect uses; gymnasium families: SyncVectorEnv and AsyncVectorEnv, both measured), nothing kept
env:     rise's make_env stepping (raw + the 84x84 gray agent observation derived per step)
collect: `rise-data collect` end to end into a fresh store (buffers, compression, writes, commits);
         its ratio is to the raw rate of the vectorization make_env picks (``auto``)

Usage: python benchmarks/collect.py [--env ALE/Pong-v5] [--envs 8] [--steps 20000] [--no-frames]
       python benchmarks/collect.py --env MiniGrid-MemoryS7-v0 --envs 4 --steps 4000   # pip install -e '.[envs]'
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from rise_data.collect import CollectConfig, collect
from rise_data.envs import env_spec, make_env


def step_rate(env, steps: int, raw: bool) -> float:
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while n < steps:
        a = rng.integers(env.n_actions, size=env.num_envs)
        env.env.step(a) if raw else env.step(a)
        n += env.num_envs
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--no-frames", action="store_true")
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
    derived = step_rate(env, args.steps, raw=False)
    env.close()
    with tempfile.TemporaryDirectory() as tmp:
        out = collect(
            CollectConfig(
                args.env,
                os.path.join(tmp, "b.zarr"),
                steps=args.steps,
                envs=args.envs,
                frames=not args.no_frames,
                wrappers=args.wrapper,
                progress=False,
            )
        )
    rate = out["steps"] / out["seconds"]
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
    print(f"rise-data collect       : {rate:9.0f} steps/s   ratio to raw {rate / raw:.3f}  (goal >= 0.80)")


if __name__ == "__main__":
    main()
