"""One gradient step: BTR (K=0) vs RISE (K=80) vs an R2D2-style learner, same device, one run.

BTR and RISE: `rise_agent.learner.Learner.step` (online + target IQN passes, Munchausen target, backward,
Adam) on a batch of single transitions (batch 256): RISE adds an LSTM over K stored embeddings per state.
R2D2-style: the same Impala CNN re-encodes every frame of 80-step sequences (online and target), an LSTM runs
over the CNN features and a dueling head scores every step; sequences x length frames go through the CNN per
step (default 32 x 80, the usual R2D2 shape). Printed: ms per step and ratios to BTR; the last line is one
JSON object: ``rise_over_btr`` and ``r2d2_over_btr`` (ms per step / BTR's) and the ms of each.
Usage: python benchmarks/learner_step.py [--batch 256] [--k 80] [--seqs 32] [--device auto]
"""

from __future__ import annotations

import argparse
import copy
import time
from types import SimpleNamespace

import numpy as np
import torch
from _common import machine, print_ratios
from torch import nn

from rise_agent.learner import Learner, LearnerConfig
from rise_agent.network import DuelingHead, ImpalaCNN, NetworkConfig
from rise_data.encode import resolve_device


def batch(b: int, k: int, d: int, n_actions: int, device) -> SimpleNamespace:
    def frames():
        return torch.randint(0, 256, (b, 4, 84, 84), dtype=torch.uint8, device=device)

    def ctx():
        return (
            (torch.randn(b, k, d, device=device).half(), torch.rand(b, k, device=device) > 0.1)
            if k
            else (None, None)
        )

    c, m = ctx()
    nc, nm = ctx()
    return SimpleNamespace(
        frames=frames(),
        context=c,
        mask=m,
        action=torch.randint(0, n_actions, (b,), device=device),
        returns=torch.randn(b, device=device),
        discount=torch.full((b,), 0.99, device=device),
        next_frames=frames(),
        next_context=nc,
        next_mask=nm,
        weights=torch.ones(b, device=device),
        index=np.arange(b),
    )


class R2D2Learner(nn.Module):
    """Re-encodes every frame of each sequence with the learnable CNN, for online and target networks."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.cnn = ImpalaCNN(config)
        self.lstm = nn.LSTM(config.conv_features, 512, batch_first=True)
        self.head = DuelingHead(512, config)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # (S, L, 4, 84, 84) -> (S, L, A)
        s, length = frames.shape[:2]
        feat = self.cnn(frames.flatten(0, 1)).view(s, length, -1)
        h, _ = self.lstm(feat)
        return self.head(h.reshape(s * length, -1)).view(s, length, -1)


def r2d2_step(online, target, opt, frames, actions, returns):
    with torch.no_grad():
        q_next = target(frames)[:, 1:].max(-1).values
    q = online(frames)[:, :-1].gather(-1, actions[..., None]).squeeze(-1)
    loss = nn.functional.smooth_l1_loss(q, returns + 0.99 * q_next)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(online.parameters(), 10.0)
    opt.step()


def timeit(fn, device, seconds: float) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        fn()
        n += 1
    sync()
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--k", type=int, default=80)
    p.add_argument("--embed-dim", type=int, default=512)
    p.add_argument("--seqs", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=80)
    p.add_argument("--n-actions", type=int, default=6)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    results = {}
    for name, k in (("BTR (K=0)", 0), (f"RISE (K={args.k})", args.k)):
        cfg = NetworkConfig(n_actions=args.n_actions, context_len=k, embed_dim=args.embed_dim)
        # same precision as the R2D2 comparison below (bf16 autocast on CUDA, fp32 on CPU)
        precision = "bf16" if device.type == "cuda" else "fp32"
        learner = Learner(cfg, LearnerConfig(precision=precision), device)
        b = batch(args.batch, k, args.embed_dim, args.n_actions, device)
        results[name] = timeit(lambda learner=learner, b=b: learner.step(b), device, args.seconds)
    cfg = NetworkConfig(n_actions=args.n_actions, context_len=0)
    online = R2D2Learner(cfg).to(device)
    target = copy.deepcopy(online).requires_grad_(False)
    opt = torch.optim.Adam(online.parameters(), lr=1e-4, eps=1.95e-5)
    frames = torch.randint(0, 256, (args.seqs, args.seq_len + 1, 4, 84, 84), dtype=torch.uint8, device=device)
    actions = torch.randint(0, args.n_actions, (args.seqs, args.seq_len), device=device)
    returns = torch.randn(args.seqs, args.seq_len, device=device)
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )

    def r2d2():
        with amp:
            r2d2_step(online, target, opt, frames, actions, returns)

    results[f"R2D2-style ({args.seqs}x{args.seq_len + 1} frames)"] = timeit(r2d2, device, args.seconds)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    base = results["BTR (K=0)"]
    print(f"device: {machine(name)}; batch {args.batch}; {args.n_actions} actions")
    for k, v in results.items():
        print(f"{k:<34} {v:9.1f} ms/step   ratio to BTR {v / base:5.2f}")
    _, rise, r2d2 = results.values()
    ms = {k: round(v, 2) for k, v in results.items()}
    print_ratios(
        {"rise_over_btr": round(rise / base, 3), "r2d2_over_btr": round(r2d2 / base, 3)}, name, ms=ms
    )


if __name__ == "__main__":
    main()
