"""Collection rate vs raw vector-env stepping, measured in one run.

raw:     ale_py AtariVectorEnv stepping with random actions (the same RGB config collect uses), nothing kept
env:     rise's make_env stepping (raw + the 84x84 gray agent observation derived per step)
collect: `rise-data collect` end to end into a fresh store (buffers, compression, writes, commits)

Usage: python benchmarks/collect.py [--envs 8] [--steps 20000] [--no-frames]
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
    args = p.parse_args()
    spec = env_spec(args.env)
    env = make_env(spec, num_envs=args.envs)
    step_rate(env, args.envs * 50, raw=True)  # warm-up
    raw = step_rate(env, args.steps, raw=True)
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
                progress=False,
            )
        )
    rate = out["steps"] / out["seconds"]
    print(
        f"machine: {os.cpu_count()} cores; env {args.env}, {args.envs} envs, {args.steps} steps, frames={'off' if args.no_frames else 'on'}"
    )
    print(f"raw vector-env stepping : {raw:9.0f} steps/s")
    print(f"make_env (+ agent obs)  : {derived:9.0f} steps/s   ratio to raw {derived / raw:.3f}")
    print(f"rise-data collect       : {rate:9.0f} steps/s   ratio to raw {rate / raw:.3f}  (goal >= 0.80)")


if __name__ == "__main__":
    main()
