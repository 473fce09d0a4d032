"""What fsynced commits cost (durability safe vs fast), measured in one run.

Rounds interleave the variants, so load from other jobs hits each alike; ratios are taken within a round
and their median over rounds is reported:

raw:     the raw vector env stepping with random actions, nothing kept (as benchmarks/collect.py)
collect: `rise-data collect` end to end into a fresh store, --durability safe (the default: each commit
         fsyncs the files and directories written since the last one, then its metadata) and fast (no fsync)
writer:  the store writer alone: the real Pong episodes of one collect appended to a fresh store one
         episode per commit (as collect commits them), safe and fast; rows/s

The last line is one JSON object: ``collect_raw_safe``/``collect_raw_fast`` (collect rate / raw rate),
``collect_safe_over_fast`` and ``writer_safe_over_fast`` (rate ratios, 1.0 = free), and the fsync calls
per commit of the safe writer.

Usage: python benchmarks/durability.py [--env ALE/Pong-v5] [--envs 8] [--steps 4000] [--rounds 3] [--no-frames]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from _common import env_parser, machine, print_ratios, raw_rate

from rise_data.collect import CollectConfig, collect
from rise_data.envs import env_spec
from rise_data.store import Episode, create_store, open_store

VARIANTS = ("safe", "fast")


def collect_rate(args, durability: str, store: str) -> float:
    config = CollectConfig(
        args.env,
        store,
        steps=args.steps,
        num_envs=args.envs,
        frames=not args.no_frames,
        durability=durability,
        progress=False,
    )
    out = collect(config)
    return out["steps"] / out["seconds"]


def episodes_of(path: str) -> list[Episode]:
    """Every episode of a store, as the collector hands them to the writer."""
    s = open_store(path)
    ep = s.episodes()
    obs, frame = s.read("obs"), s.read("frame") if s.has_frames else None
    action, reward, last = s.read("action"), s.read("reward"), s.read("terminated")
    out = []
    for a, t in zip(ep["start"], ep["length"], strict=True):
        b = a + t + 1
        out.append(
            Episode(
                obs=obs[a:b],
                frame=None if frame is None else frame[a:b],
                action=action[a : b - 1],
                reward=reward[a : b - 1],
                terminated=bool(last[b - 1]),
                truncated=not bool(last[b - 1]),
            )
        )
    return out


class FsyncCounter:
    def __init__(self) -> None:
        self.calls = 0
        self.real = os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.real(fd)


def writer_rate(
    src: str, episodes: list[Episode], durability: str, path: str, counter: FsyncCounter
) -> float:
    s = open_store(src)
    frame_shape = tuple(s.group["frame"].shape[1:]) if s.has_frames else None
    store = create_store(path, s.env, tuple(s.env["obs_shape"]), frame_shape, durability=durability)
    rows = sum(len(e.obs) for e in episodes)
    counter.calls = 0
    t0 = time.perf_counter()
    for e in episodes:
        store.append_episodes([e])
    return rows / (time.perf_counter() - t0)


def main() -> None:
    p = env_parser(__doc__, steps=4000)
    p.add_argument("--no-frames", action="store_true")
    args = p.parse_args()
    spec = env_spec(args.env)
    raw_rate(spec, args.envs, args.envs * 50)  # warm-up
    counter = FsyncCounter()
    os.fsync = counter  # counts the safe writer's calls (one integer add each)
    rates: dict[str, list[float]] = {k: [] for k in ("raw", *VARIANTS, *(f"writer_{v}" for v in VARIANTS))}
    fsyncs_per_commit: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            rates["raw"].append(raw_rate(spec, args.envs, args.steps))
            for v in VARIANTS:
                rates[v].append(collect_rate(args, v, os.path.join(tmp, f"c{r}{v}.zarr")))
            src = os.path.join(tmp, f"c{r}fast.zarr")
            episodes = episodes_of(src)
            for v in VARIANTS:
                rates[f"writer_{v}"].append(
                    writer_rate(src, episodes, v, os.path.join(tmp, f"w{r}{v}"), counter)
                )
                if v == "safe":
                    fsyncs_per_commit.append(counter.calls / len(episodes))
    os.fsync = counter.real
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"machine: {machine()}; env {args.env}, {args.envs} envs, {args.steps} steps, "
        f"frames {'off' if args.no_frames else 'on'}, {args.rounds} interleaved rounds (medians)"
    )
    print(f"{'variant':24s} {'steps or rows/s':>16s}   rounds")
    for k, v in rates.items():
        print(f"{k:24s} {med[k]:16.0f}   {' '.join(f'{x:.0f}' for x in v)}")
    print(
        f"safe writer: {statistics.median(fsyncs_per_commit):.0f} fsync calls per commit (one episode each)"
    )
    pairs = {
        "collect_raw_safe": ("safe", "raw"),
        "collect_raw_fast": ("fast", "raw"),
        "collect_safe_over_fast": ("safe", "fast"),
        "writer_safe_over_fast": ("writer_safe", "writer_fast"),
    }
    per_round = {k: [x / y for x, y in zip(rates[a], rates[b], strict=True)] for k, (a, b) in pairs.items()}
    for k, v in per_round.items():
        print(f"{k:24s} {statistics.median(v):16.3f}   {' '.join(f'{x:.3f}' for x in v)}")
    ratios = {k: round(statistics.median(v), 3) for k, v in per_round.items()}
    print_ratios(ratios, fsyncs_per_commit=statistics.median(fsyncs_per_commit))


if __name__ == "__main__":
    main()
