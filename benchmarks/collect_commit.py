"""What committing every finished episode at once costs collect, measured in one run.

Rounds interleave, so load from other jobs hits every variant alike (medians are printed):

raw:      the family's raw vector env stepping with random actions, nothing kept (as benchmarks/collect.py)
each:     `collect` as shipped: every finished episode committed as soon as the writer is free
batched:  `collect` with commit_rows=2048: commits wait for 2,048 finished rows (the old behaviour, whose
          kill -9 could lose up to 2,048 rows of finished episodes)

Usage: python benchmarks/collect_commit.py [--env ALE/Pong-v5] [--envs 8] [--steps 4000] [--rounds 3]
"""

from __future__ import annotations

import os
import statistics
import tempfile

from _common import env_parser, raw_rate

from rise_data.collect import CollectConfig, collect
from rise_data.envs import env_spec


def collect_run(args, commit_rows: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = CollectConfig(
            args.env,
            os.path.join(tmp, "b.zarr"),
            steps=args.steps,
            num_envs=args.envs,
            commit_rows=commit_rows,
            progress=False,
        )
        out = collect(config)
    return {**out, "rate": out["steps"] / out["seconds"]}


def main() -> None:
    args = env_parser(__doc__, steps=4000).parse_args()
    spec = env_spec(args.env)
    raw_rate(spec, args.envs, args.envs * 50)  # warm-up
    rows: dict[str, list[float]] = {"each/raw": [], "batched/raw": [], "each/batched": []}
    each_runs = []
    for _ in range(args.rounds):
        raw = raw_rate(spec, args.envs, args.steps)
        each = collect_run(args, 0)
        batched = collect_run(args, 2048)
        rows["each/raw"].append(each["rate"] / raw)
        rows["batched/raw"].append(batched["rate"] / raw)
        rows["each/batched"].append(each["rate"] / batched["rate"])
        each_runs.append(each)
    print(
        f"machine: {os.cpu_count()} cores; env {args.env}, {args.envs} envs, {args.steps} steps x "
        f"{args.rounds} interleaved rounds"
    )
    for name, values in rows.items():
        print(
            f"{name:13s}: median {statistics.median(values):.3f}   rounds {' '.join(f'{v:.3f}' for v in values)}"
        )
    commits = [r["commits"] for r in each_runs]
    episodes = [r["episodes"] for r in each_runs]
    latency = max(r["commit_latency_max_s"] for r in each_runs)
    print(
        f"each: commits per run {commits} for episodes {episodes}; worst episode end -> commit {latency:.3f} s"
    )


if __name__ == "__main__":
    main()
