"""End-to-end `rise-data encode` throughput vs the same encoder's model-only throughput, one run, one device.

model-only: the encoder (on-device preprocessing + network, bf16 autocast + channels_last on CUDA) applied
            to a uint8 batch already resident on the device, timed with device synchronisation
end-to-end: `encode()` on a real store (chunk reads + zstd decompression + host->device copies + writes)

The store is a real Pong collection made first (``--frames`` rows, native 210x160 RGB).
Usage: python benchmarks/encode.py [--encoder resnet18 --weights untrained] [--frames 20000] [--compile]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, _model_fn, encode, resolve_device
from rise_data.encoders import make_encoder
from rise_data.store import open_store


def model_only(config: EncodeConfig, frames: torch.Tensor, seconds: float) -> float:
    device = resolve_device(config.device)
    enc = make_encoder(config.encoder, weights=config.weights, source="frame").to(device)
    run = _model_fn(enc, device, config)
    x = frames.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(3):
            run(x)
        sync()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            run(x).to(torch.float16)
            n += len(x)
        sync()
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--weights", default="untrained", help="speed does not depend on the weights' values")
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--read-workers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--store", default=None, help="reuse a store instead of collecting one")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or os.path.join(tmp, "bench.zarr")
        if not args.store:
            collect(
                CollectConfig(
                    "ALE/Pong-v5", path, steps=args.frames, envs=min(16, os.cpu_count() or 1), progress=False
                )
            )
        store = open_store(path)
        config = EncodeConfig(
            store=path,
            encoder=args.encoder,
            weights=args.weights,
            name="bench",
            batch_size=args.batch_size,
            device=args.device,
            compile=args.compile,
            read_workers=args.read_workers,
            overwrite=True,
            progress=False,
        )
        frames = torch.from_numpy(store.read("frame", 0, args.batch_size))
        model = model_only(config, frames, args.seconds)
        if args.compile:  # compile once outside the timed end-to-end run, as model_only did
            encode(EncodeConfig(**{**config.__dict__, "store": path}))
        out = encode(config)
        device = resolve_device(args.device)
        name = (
            torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
        )
        print(
            f"device: {name}; encoder {args.encoder}; {store.rows} frames {tuple(store.array('frame').shape[1:])}; batch {args.batch_size}; compile={args.compile}"
        )
        print(f"model-only : {model:9.0f} frames/s")
        print(
            f"end-to-end : {out['rows_per_s']:9.0f} frames/s   ratio {out['rows_per_s'] / model:.3f}  (goal >= 0.90)"
        )


if __name__ == "__main__":
    main()
