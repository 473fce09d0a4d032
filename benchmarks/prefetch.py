"""The learner loop (sample, step, priorities) with the prefetching sampler vs eager, one run.

A ring filled with random 84x84 frames and fp16 embeddings (E envs, episodes of random length); then,
interleaved in rounds so load drift hits all alike: ``Replay.sample`` alone, ``Learner.step`` alone on a
fixed batch, the eager loop and the prefetch loop (``ReplayConfig.prefetch``). Ratios: prefetch loop /
max(sample, step) (goal <= 1.1), eager loop / max, eager / prefetch. Ends with one JSON line.
Usage: python benchmarks/prefetch.py [--batch 64] [--k 80] [--small] [--threads 1] [--reps 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np
import torch
from _common import fill

from rise_agent.learner import Learner, LearnerConfig
from rise_agent.network import NetworkConfig
from rise_agent.replay import Replay, ReplayConfig
from rise_data.encode import resolve_device

SMALL = {"impala_channels": (8, 16, 16), "hidden": 64, "lstm_hidden": 64}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--k", type=int, default=80)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--rows-per-env", type=int, default=600)
    ap.add_argument(
        "--small", action="store_true", help="a small network, so sampling and the step are comparable"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10, help="calls per variant per round (3 rounds)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    cfg = ReplayConfig(capacity=a.envs * a.rows_per_env)
    net = NetworkConfig(n_actions=6, context_len=a.k, embed_dim=a.dim, **(SMALL if a.small else {}))
    replays = {p: Replay(dataclasses.replace(cfg, prefetch=p), (84, 84), a.dim, a.envs, device, network=net) for p in (False, True)}  # fmt: skip
    for r in replays.values():
        fill(r, a.envs, a.rows_per_env - 10, a.dim)
    learner = Learner(net, LearnerConfig(), device)
    rngs = {k: np.random.default_rng(1) for k in ("sample", "eager", "prefetch")}
    fixed = replays[False].sample(a.batch, rngs["sample"])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def loop(replay, rng):
        b = replay.sample(a.batch, rng)
        _, prio = learner.step(b)
        replay.update_priorities(b.index, prio)

    fns = {
        "sample": lambda: replays[False].sample(a.batch, rngs["sample"]),
        "step": lambda: learner.step(fixed),
        "eager": lambda: loop(replays[False], rngs["eager"]),
        "prefetch": lambda: loop(replays[True], rngs["prefetch"]),
    }
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(3):
        for k, f in fns.items():
            sync()
            t = time.perf_counter()
            for _ in range(a.reps):
                f()
            sync()
            times[k].append((time.perf_counter() - t) / a.reps * 1e3)
    ms = {k: float(np.median(v)) for k, v in times.items()}
    top = max(ms["sample"], ms["step"])
    print(f"batch {a.batch}, K={a.k}, {'small' if a.small else 'BTR'} network, {a.threads} torch threads, {device}: "
          + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))  # fmt: skip
    ratios = {
        "prefetch_vs_max": round(ms["prefetch"] / top, 3),
        "eager_vs_max": round(ms["eager"] / top, 3),
        "prefetch_speedup": round(ms["eager"] / ms["prefetch"], 3),
    }
    print(
        json.dumps(
            {"ratios": ratios, "machine": f"{device} ({os.cpu_count()} cores), load {os.getloadavg()[0]:.2f}"}
        )
    )


if __name__ == "__main__":
    main()
