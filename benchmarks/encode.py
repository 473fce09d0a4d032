"""End-to-end `rise-data encode` throughput vs the same encoder's model-only throughput, one run, one device.

model-only: the encoder (on-device preprocessing + network, bf16 autocast + channels_last on CUDA) applied
            to a uint8 batch already resident on the device, timed with device synchronisation
end-to-end: `encode()` on a real store (chunk reads + zstd decompression + host->device copies + writes)

The store is a real Pong collection made first (``--frames`` rows, native 210x160 RGB).
Usage: python benchmarks/encode.py [--encoder resnet18 --weights untrained] [--frames 20000] [--compile]

Scaling (``--ranks N``): the same encode through torchrun with 1 rank and with N ranks on this machine
(``--threads`` torch threads per rank, so N ranks x threads should fit the cores), printing
N-rank throughput / (N x 1-rank throughput). Throughput = rows / the slowest rank's encode time (process
start-up and model build excluded, as in a long job). ``--repeats R`` alternates the two runs R times and
keeps each one's best (other jobs on a shared machine only ever slow a run down).
Usage: python benchmarks/encode.py --ranks 2 --threads 1 --frames 4000 --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from rise_data.collect import CollectConfig, collect
from rise_data.encode.encoders import make_encoder
from rise_data.encode.run import EncodeConfig, _model_fn, encode, resolve_device
from rise_data.store import StoreLayout, open_store


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


def ranked_run(path: str, ranks: int, args: argparse.Namespace) -> dict:
    """One torchrun encode of ``path`` with ``ranks`` processes (fresh array); its summary."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
    cmd += [__file__, "--worker", "--store", path, "--encoder", args.encoder, "--weights", args.weights]
    cmd += ["--batch-size", str(args.batch_size), "--device", args.device, "--threads", str(args.threads)]
    cmd += ["--read-workers", str(args.read_workers)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{ranks}-rank run failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def worker(args: argparse.Namespace) -> None:
    """Inside torchrun: one rank of the encode; rank 0 prints the job's summary."""
    out = encode(
        EncodeConfig(
            store=args.store,
            encoder=args.encoder,
            weights=None if args.weights == "none" else args.weights,
            name="bench",
            batch_size=args.batch_size,
            device=args.device,
            read_workers=args.read_workers,
            overwrite=True,
            progress=False,
            threads=args.threads,
        )
    )
    if os.environ.get("RANK", "0") == "0":
        print("RESULT " + json.dumps(out), flush=True)


def scaling(path: str, args: argparse.Namespace) -> None:
    best: dict[int, dict] = {}
    for _ in range(args.repeats):
        for n in (1, args.ranks):
            out = ranked_run(path, n, args)
            assert out["complete"] and out["ranks"] == n
            if n not in best or out["rows_per_s"] > best[n]["rows_per_s"]:
                best[n] = out
    one, many = best[1]["rows_per_s"], best[args.ranks]["rows_per_s"]
    rows = open_store(path).rows
    print(
        f"machine: {os.cpu_count()} CPU cores{', CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''}; "
        f"encoder {args.encoder}; {rows} frames; batch {args.batch_size}; {args.threads} thread(s) per rank; "
        f"device {best[args.ranks]['device']} (rank 0); embedding chunk {open_store(path).embedding('bench').chunks[0]} rows; "
        f"best of {args.repeats}"
    )
    print(f"1 rank     : {one:9.1f} frames/s  ({best[1]['seconds']:.1f} s)")
    print(f"{args.ranks} ranks    : {many:9.1f} frames/s  ({best[args.ranks]['seconds']:.1f} s)")
    print(
        f"scaling ratio {args.ranks}-rank / ({args.ranks} x 1-rank) = {many / (args.ranks * one):.3f}  (goal >= 0.85)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument(
        "--weights",
        default="untrained",
        help="speed does not depend on the weights' values ('none': no weights)",
    )
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--read-workers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--store", default=None, help="reuse a store instead of collecting one")
    p.add_argument("--ranks", type=int, default=0, help="measure N-rank torchrun scaling instead")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (--ranks)")
    p.add_argument("--repeats", type=int, default=1, help="alternating 1-rank / N-rank runs (--ranks)")
    p.add_argument(
        "--embedding-chunk-kib", type=int, default=256, help="embedding chunk size of the store (--ranks)"
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or os.path.join(tmp, "bench.zarr")
        if not args.store:
            # --ranks: smaller embedding chunks, so a few thousand frames make enough chunks to share out
            layout = (
                StoreLayout(embedding_chunk_bytes=args.embedding_chunk_kib << 10)
                if args.ranks
                else StoreLayout()
            )
            collect(
                CollectConfig(
                    "ALE/Pong-v5",
                    path,
                    steps=args.frames,
                    num_envs=min(16, os.cpu_count() or 1),
                    progress=False,
                    layout=layout,
                )
            )
        if args.ranks:
            return scaling(path, args)
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
