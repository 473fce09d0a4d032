"""rise_data.torch.StoreDataset through a DataLoader on CPU: items/s with 0 and 2 workers, chunk LRU vs RAM cache.

A real ALE Pong store (collected here with the random policy unless ``--store`` names one; downsample
embeddings added if it has none) is read as a BC-style item: the agent's frame stack (S=4), the action,
and the last K=16 embeddings with their mask. Three read paths: the default chunk LRU (256 MB: a store this
small ends up decoded in RAM), a 2 MB LRU (about one chunk per array, so a shuffled item decodes a chunk:
what a store much larger than the LRU costs) and ``cache=True``. Shuffled batches of 64 for ``--seconds``
per variant after one warm-up batch; each variant runs ``--reps`` times interleaved with the others (load drift hits all alike)
and keeps its best. Torch uses one thread per process. Ends with one JSON line of ratios.
Usage: python benchmarks/dataset.py [--store PONG.zarr] [--steps 3000] [--seconds 3] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.store import open_store
from rise_data.torch import StoreDataset

KEYS = ("obs_stack", "action", "context", "context_mask")


def items_per_s(ds: StoreDataset, workers: int, seconds: float, batch_size: int = 64) -> float:
    """Items per second over shuffled epochs for at least ``seconds`` (after one warm-up batch)."""
    g = torch.Generator().manual_seed(0)
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        generator=g,
        persistent_workers=workers > 0,
    )
    next(iter(loader))  # warm-up: worker start, first chunks
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        for batch in loader:
            n += len(batch["row"])
            if time.perf_counter() - t >= seconds:
                break
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    store = args.store or os.path.join(tempfile.mkdtemp(), "pong.zarr")
    if not args.store:
        collect(CollectConfig("ALE/Pong-v5", store, steps=args.steps, num_envs=4, seed=0, progress=False))
    if not open_store(store).embedding_names():
        encode(EncodeConfig(store=store, encoder="downsample", device="cpu", progress=False, threads=1))
    variants = {
        "workers0": (dict(), 0),
        "workers2": (dict(), 2),
        "workers0_decode": (dict(chunk_cache_mb=2), 0),
        "workers2_decode": (dict(chunk_cache_mb=2), 2),
        "workers0_ram": (dict(cache=True), 0),
        "workers2_ram": (dict(cache=True), 2),
    }
    best = dict.fromkeys(variants, 0.0)
    for _ in range(args.reps):
        for name, (kw, workers) in variants.items():
            ds = StoreDataset(store, KEYS, frame_stack=4, context_len=16, **kw)
            best[name] = max(best[name], items_per_s(ds, workers, args.seconds))
    rows = open_store(store).rows
    for name, v in best.items():
        print(f"{name:14s} {v:10.0f} items/s")
    ratios = {
        "workers2_over_workers0": round(best["workers2"] / best["workers0"], 3),
        "workers2_over_workers0_decode": round(best["workers2_decode"] / best["workers0_decode"], 3),
        "workers2_over_workers0_ram": round(best["workers2_ram"] / best["workers0_ram"], 3),
        "ram_over_chunk_cache_workers0": round(best["workers0_ram"] / best["workers0"], 3),
    }
    items = {k: round(v) for k, v in best.items()}
    machine = f"cpu ({os.cpu_count()} cores), load {os.getloadavg()[0]:.2f}, store {rows} rows"
    print(json.dumps({"ratios": ratios, "items_per_s": items, "machine": machine}))


if __name__ == "__main__":
    main()
