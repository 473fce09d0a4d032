"""The Impala CNN's memory layout on this device: NCHW against NHWC (channels_last), one run, interleaved.

At Atari's 84x84 frames: ``Learner.step`` (batch 32, K=0 and K=16 with 512-d embeddings) for the small network
(Impala 8/16/16, hidden 64) and BTR's (32/64/64, hidden 512), and the actor's forward (fresh noise, advantages,
batch 8 and 4) for the small one. The layouts take turns (``--rounds``), so a change of load falls on both;
the medians are compared. The CPU default is NHWC (``rise_agent.network.default_channels_last``): this is its
measurement. Ends with one JSON line: ``{name}_nhwc_speedup`` = NCHW ms / NHWC ms for each row.
Usage: python benchmarks/cnn_layout.py [--rounds 3] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import machine, print_ratios
from learner_step import batch

from rise_agent.learner import Learner, LearnerConfig
from rise_agent.network import NetworkConfig, make_network
from rise_data.encode import resolve_device

NETS = {"small": ((8, 16, 16), 64, 64), "btr": ((32, 64, 64), 512, 512)}  # channels, hidden, LSTM


def ms(fn, reps: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps * 1e3


def learner_row(name: str, k: int, nhwc: bool, device: torch.device):
    chans, hidden, lstm = NETS[name]
    cfg = NetworkConfig(n_actions=6, impala_channels=chans, hidden=hidden, lstm_hidden=lstm, context_len=k)
    learner = Learner(cfg, LearnerConfig(channels_last=nhwc), device)
    b = batch(32, k, cfg.embed_dim, 6, device)
    return lambda: learner.step(b)


def acting_row(b: int, nhwc: bool, device: torch.device):
    chans, hidden, lstm = NETS["small"]
    cfg = NetworkConfig(n_actions=6, impala_channels=chans, hidden=hidden, lstm_hidden=lstm, context_len=0)
    net = make_network(cfg).to(device).train().requires_grad_(False)
    net.set_layout(nhwc, 0, None)
    frames = torch.randint(0, 256, (b, 4, 84, 84), dtype=torch.uint8, device=device)

    @torch.no_grad()
    def act() -> None:
        net.reset_noise()
        net.q_values(frames, None, None, 8, advantages_only=True).argmax(1)

    return act


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    a = p.parse_args()
    device = resolve_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = {
        f"learner_{n}_k{k}": (lambda nhwc, n=n, k=k: learner_row(n, k, nhwc, device))
        for n in NETS
        for k in (0, 16)
    }
    rows |= {f"act_b{b}": (lambda nhwc, b=b: acting_row(b, nhwc, device)) for b in (8, 4)}
    reps = {name: 4 if "btr" in name else 20 if "learner" in name else 100 for name in rows}
    fns = {(name, nhwc): make(nhwc) for name, make in rows.items() for nhwc in (False, True)}
    times: dict[tuple[str, bool], list[float]] = {key: [] for key in fns}
    for _ in range(a.rounds):
        for (name, nhwc), fn in fns.items():
            times[name, nhwc].append(ms(fn, reps[name], device))
    name_dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device: {machine(name_dev)}; {torch.get_num_threads()} torch threads; medians of {a.rounds} rounds"
    )
    ratios, report = {}, {}
    for name in rows:
        nchw, nhwc = (statistics.median(times[name, x]) for x in (False, True))
        print(f"{name:<18} NCHW {nchw:8.2f} ms   NHWC {nhwc:8.2f} ms   speed-up {nchw / nhwc:5.2f}x")
        ratios[f"{name}_nhwc_speedup"] = round(nchw / nhwc, 3)
        report[name] = {"nchw_ms": round(nchw, 2), "nhwc_ms": round(nhwc, 2)}
    print_ratios(ratios, name_dev, ms=report)


if __name__ == "__main__":
    main()
