"""Chunk shape and zstd level for image arrays, measured on real Pong data (the numbers in docs/store-format.md).

For each layout: write throughput, compression ratio, and sequential chunk-aligned read throughput (how
`encode` and the replay cache read). Random row gathers are not measured: rise never samples from Zarr.
Usage: python benchmarks/chunking.py [--steps 3000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import zarr
from zarr.codecs import ZstdCodec

from rise_data.collect import CollectConfig, collect
from rise_data.store import open_store


def measure(name: str, data, rows: int, level: int, tmp: str) -> tuple[float, float, float]:
    path = os.path.join(tmp, f"{name}_{rows}_{level}.zarr")
    arr = zarr.create_array(
        path,
        shape=data.shape,
        chunks=(rows, *data.shape[1:]),
        dtype="uint8",
        compressors=ZstdCodec(level=level),
    )
    t0 = time.perf_counter()
    arr[:] = data
    write = data.nbytes / (time.perf_counter() - t0) / 1e6
    stored = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    step = max(rows, 512 // rows * rows)
    t0 = time.perf_counter()
    for s in range(0, len(data), step):
        arr[s : s + step]
    read = len(data) / (time.perf_counter() - t0)
    return write, data.nbytes / stored, read


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src.zarr")
        collect(CollectConfig("ALE/Pong-v5", src, steps=args.steps, num_envs=4, progress=False))
        store = open_store(src)
        print(f"{os.cpu_count()} cores; {store.rows} real Pong rows")
        print(
            f"{'array':<6} {'rows/chunk':>10} {'chunk MB':>8} {'zstd':>4} {'write MB/s':>10} {'ratio':>7} {'seq read rows/s':>15}"
        )
        for name, options in (("obs", (64, 256, 1024)), ("frame", (4, 16, 64))):
            data = store.read(name)
            for rows in options:
                for level in (1, 3):
                    w, r, rd = measure(name, data, rows, level, tmp)
                    mb = rows * data[0].nbytes / 1e6
                    print(f"{name:<6} {rows:>10} {mb:>8.2f} {level:>4} {w:>10.0f} {r:>7.0f} {rd:>15.0f}")


if __name__ == "__main__":
    main()
