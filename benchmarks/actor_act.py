"""Actor.act: the learner's network deep-copied (spectral norm power-iterating, noise drawn per layer) vs
``actor_copy`` (spectral norm in eval mode, all noise in one draw), same inputs, calls interleaved, one run.

Both actors see the same random 84x84 frames and K embeddings; ``greedy`` (noise reset + advantage
forward + argmax) is timed. Ends with one JSON line of ratios.
Usage: python benchmarks/actor_act.py [--envs 16] [--k 80] [--reps 30] [--small] [--device auto]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numpy as np
import torch

from rise_agent.acting.actor import Actor
from rise_agent.acting.thread import actor_copy
from rise_agent.learner import Learner, LearnerConfig
from rise_agent.network import NetworkConfig, NoisyLinear
from rise_data.encode import resolve_device

SMALL = {"impala_channels": (8, 16, 16), "hidden": 64, "lstm_hidden": 64}


def per_layer_noise(net) -> None:
    for m in net.modules():
        if isinstance(m, NoisyLinear):
            m.reset_noise()


def aten_ops(fn) -> int:
    """Top-level aten ops one call dispatches (what launches kernels on a GPU)."""
    from torch.profiler import profile

    with profile() as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--k", type=int, default=80)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    torch.set_num_threads(1)
    device = resolve_device(a.device)
    cfg = NetworkConfig(n_actions=6, context_len=a.k, embed_dim=64, **(SMALL if a.small else {}))
    learner = Learner(cfg, LearnerConfig(), device)
    before = copy.deepcopy(
        learner.online
    )  # what the actor thread got: train mode, every hook and the Learner
    before.requires_grad_(False)
    before.reset_noise = lambda net=before: per_layer_noise(net)
    nets = {"before": before, "after": actor_copy(learner.online)}

    class _Enc:  # embeddings arrive precomputed: only the network is timed
        dim, name = cfg.embed_dim, "fixed"

    actors = {k: Actor(n, None if not a.k else _Enc(), a.envs, device) for k, n in nets.items()}
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (a.envs, 84, 84), dtype=np.uint8)
    z = np.zeros(a.envs, bool)
    for act in actors.values():
        act.encoder = None
        act._seen = True
        act._frames.push(torch.from_numpy(obs).to(device), torch.from_numpy(~z).to(device))
        if act._context is not None:
            for _ in range(a.k):
                act._context.push(
                    torch.randn(a.envs, cfg.embed_dim, device=device).half(), torch.from_numpy(z)
                )
    times = {k: [] for k in actors}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(a.reps + 3):
        for k, act in actors.items():
            sync()
            t = time.perf_counter()
            act.greedy()
            sync()
            if i >= 3:
                times[k].append(time.perf_counter() - t)
    ms = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    print(f"Actor.greedy, {a.envs} envs, K={a.k}, {'small' if a.small else 'BTR'} network on {device}: "
          f"before {ms['before']:.2f} ms, after {ms['after']:.2f} ms")  # fmt: skip
    ops = {k: aten_ops(act.greedy) for k, act in actors.items()}
    print(f"aten ops per act: before {ops['before']}, after {ops['after']}")
    ratios = {
        "act_speedup": round(ms["before"] / ms["after"], 3),
        "act_ops_ratio": round(ops["after"] / ops["before"], 3),
    }
    print(
        json.dumps(
            {"ratios": ratios, "machine": f"{device} ({os.cpu_count()} cores), load {os.getloadavg()[0]:.2f}"}
        )
    )


if __name__ == "__main__":
    main()
