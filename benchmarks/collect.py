"""Collection rate vs raw vector-env stepping, measured in one run.

raw:     the family's raw vector env stepping with random actions (Atari: ale_py AtariVectorEnv in the RGB
         config collect uses; gymnasium families: SyncVectorEnv and AsyncVectorEnv, both measured), nothing
         kept; timed from a seeded reset, as collect is (a seeded ALE reset reloads the ROM in every env:
         ~0.5 s of CPU for 8 envs, 5-20 % of an 8,000-step run); "alone" leaves the reset out
env:     rise's make_env stepping (raw + the 84x84 gray agent observation, read every step)
collect: `rise-data collect` end to end into a fresh store (reset, buffers, compression, writes, commits);
         its ratio is to the raw rate of the vectorization make_env picks (``auto``); run with and
         without frames
zstd:    the rows make_env returned, compressed alone as the store chunks them (StoreLayout)
Rounds interleave raw, collect and collect --no-frames, so load from other jobs hits them alike; the ratios
are the medians of the rounds' ratios. CPU: the process's CPU time per step (every thread), raw from make_env
to close as collect's call spends it; on a loaded box the CPU ratios move less than the wall ones. The last line is one JSON object: ``collect_raw`` = collect / raw
(goal >= 0.8), ``collect_raw_no_frames`` = collect --no-frames / raw (goal >= 0.9), ``collect_overhead`` =
collect wall / (raw wall + zstd alone) with frames (goal <= 1.2); ``collect_cpu_raw(_no_frames)`` = raw CPU
per step / collect's.

Usage: python benchmarks/collect.py [--env ALE/Pong-v5] [--envs 8] [--steps 20000] [--rounds 3]
                                    [--no-frames] [--durability fast]
       python benchmarks/collect.py --env MiniGrid-MemoryS7-v0 --envs 4 --steps 4000   # pip install -e '.[envs]'
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time

import numpy as np
from _common import env_parser, print_ratios

from rise_data.collect import CollectConfig, collect
from rise_data.envs import env_spec, make_env


def step_rate(env, steps: int, raw: bool, keep: list | None = None, reset: bool = True) -> float:
    """Random-action steps per second; ``reset``: the seeded reset counts in the time (as in collect)."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    env.reset(seed=0)
    n = 0
    if not reset:
        t0 = time.perf_counter()
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


def cpu_seconds() -> float:
    """CPU time of this process, every thread (env workers, writer, zarr's) counted."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def raw_round(spec: dict, args) -> tuple[float, float]:
    """(raw steps/s from a seeded reset, CPU seconds per step from make_env to close, as collect spends)."""
    c0 = cpu_seconds()
    env = make_env(spec, num_envs=args.envs)
    rate = step_rate(env, args.steps, raw=True)
    env.close()
    return rate, (cpu_seconds() - c0) / args.steps


def collect_rate(args, frames: bool) -> tuple[float, float]:
    """(collect steps/s, CPU seconds per step of the whole call; the temp store's deletion left out)."""
    with tempfile.TemporaryDirectory() as tmp:
        c0 = cpu_seconds()
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
        cpu = cpu_seconds() - c0
    return out["steps"] / out["seconds"], cpu / out["steps"]


def rounds(spec: dict, args) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Interleaved rounds of raw, collect and collect --no-frames: (steps/s, CPU s per step) per round."""
    rate: dict[str, list[float]] = {"raw": [], "collect": [], "bare": []}
    cpu: dict[str, list[float]] = {"raw": [], "collect": [], "bare": []}
    runs = {
        "raw": lambda: raw_round(spec, args),
        "collect": lambda: collect_rate(args, frames=not args.no_frames),
        "bare": lambda: collect_rate(args, frames=False),
    }
    for _ in range(args.rounds):
        for name, run in runs.items():
            if name == "bare" and args.no_frames:
                continue
            r, c = run()
            rate[name].append(r)
            cpu[name].append(c)
    if args.no_frames:
        rate["bare"], cpu["bare"] = rate["collect"], cpu["collect"]
    return rate, cpu


def report(args, rate: dict, cpu: dict, zstd_wall: float) -> dict:
    """Print the collect rows of the table; returns the JSON ratios (medians of the rounds' ratios)."""

    def ratio(name: str) -> float:
        return statistics.median(c / r for c, r in zip(rate[name], rate["raw"], strict=True))

    def cpu_ratio(name: str) -> float:  # raw CPU per step / collect's
        return statistics.median(r / c for c, r in zip(cpu[name], cpu["raw"], strict=True))

    def row(label: str, name: str, tail: str = "") -> None:
        rounds_ = " ".join(f"{v:.0f}" for v in rate[name])
        cpu_us = statistics.median(cpu[name]) * 1e6
        print(
            f"{label:24s}: {statistics.median(rate[name]):9.0f} steps/s   CPU {cpu_us:4.0f} us/step   "
            f"{tail}rounds {rounds_}"
        )

    overhead = statistics.median(
        (args.steps / c) / (args.steps / r + zstd_wall)
        for c, r in zip(rate["collect"], rate["raw"], strict=True)
    )
    row("raw stepping from reset", "raw")
    for label, name in (("rise-data collect", "collect"), ("collect --no-frames", "bare")):
        row(label, name, f"ratio to raw {ratio(name):.3f} (CPU {cpu_ratio(name):.3f})  ")
    print(f"collect wall / (raw + zstd alone) {overhead:.3f}  (goal <= 1.2)")
    return {
        "collect_raw": round(ratio("collect"), 3),
        "collect_raw_no_frames": round(ratio("bare"), 3),
        "collect_overhead": round(overhead, 3),
        "collect_cpu_raw": round(cpu_ratio("collect"), 3),
        "collect_cpu_raw_no_frames": round(cpu_ratio("bare"), 3),
    }


def main() -> None:
    p = env_parser(__doc__, steps=20_000)
    p.add_argument("--no-frames", action="store_true")
    p.add_argument(
        "--durability", choices=("safe", "fast"), default="safe", help="collect's commits (fsync or not)"
    )
    p.add_argument("--wrapper", action="append", default=[], help="gymnasium wrapper NAME[=ARG], repeatable")
    args = p.parse_args()
    spec = env_spec(args.env, wrappers=args.wrapper)
    modes: dict[str, float] = {}
    for mode in ("sync", "async") if spec["family"] != "atari" else ():
        env = make_env(spec, num_envs=args.envs, vectorization=mode)
        step_rate(env, args.envs * 20, raw=True)  # warm-up
        modes[mode] = step_rate(env, args.steps, raw=True)
        env.close()
    env = make_env(spec, num_envs=args.envs)
    auto = "async" if type(env.env).__name__ == "GymVector" and hasattr(env.env.env, "step_wait") else "sync"
    step_rate(env, args.envs * 20, raw=True)  # warm-up
    alone = step_rate(env, args.steps, raw=True, reset=False)
    kept: list = []
    derived = step_rate(env, args.steps, raw=False, keep=kept)
    env.close()
    rate, cpu = rounds(spec, args)
    t_zstd = compress_seconds(kept, frames=not args.no_frames)
    n = sum(len(o) for o, _ in kept)
    print(
        f"machine: {os.cpu_count()} cores; env {args.env}, {args.envs} envs, {args.steps} steps x {args.rounds} "
        f"interleaved rounds, frames={'off' if args.no_frames else 'on'}, durability {args.durability}"
    )
    if modes:
        print(f"raw SyncVectorEnv       : {modes['sync']:9.0f} steps/s")
        print(
            f"raw AsyncVectorEnv      : {modes['async']:9.0f} steps/s   async/sync {modes['async'] / modes['sync']:.3f}"
            f"  (make_env auto picks {auto})"
        )
    print(f"raw stepping, no reset  : {alone:9.0f} steps/s")
    print(
        f"make_env (+ agent obs)  : {derived:9.0f} steps/s   ratio to raw {derived / statistics.median(rate['raw']):.3f}"
    )
    ratios = report(args, rate, cpu, t_zstd * args.steps / n)
    print(f"zstd of the same rows   : {n / t_zstd:9.0f} steps/s alone")
    print_ratios(ratios)


if __name__ == "__main__":
    main()
