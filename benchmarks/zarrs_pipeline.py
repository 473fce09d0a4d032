"""zarr-python's own codec pipeline vs zarrs' (Rust) on one rise store: write, read, random chunks, check.

A store in rise's layout (``create_store``: zstd 1, obs 256-row chunks, frames 16-row chunks) gets
``--rows`` rows of real ALE Pong (a seed collected here with the random policy, tiled to ``--rows``)
written (``durability="fast"``: zarr's own ``LocalStore``, which zarrs writes to itself; rise's default
durable store is a ``LocalStore`` subclass that zarrs hands back to zarr-python's pipeline, so its writes
keep their fsync order) through zarr's API in ~64 MB blocks (``arr[a:b] = rows``: every chunk through the codec
pipeline), then is read back sequentially (``Store.read``, ~64 MB blocks, every array), read by
``--chunks`` random whole chunks of ``obs`` and ``frame`` (what ``StoreDataset``'s chunk cache does on a
miss), and checked (``rise-data check``: every chunk decoded). Each pipeline runs in its own process
(``ZARR_CODEC_PIPELINE__PATH``), ``--reps`` times interleaved; each keeps its best time. Both stores are
then hashed file by file (the root ``zarr.json`` with its creation time left out of the comparison) to
show that zarrs writes the same bytes.
Usage: python benchmarks/zarrs_pipeline.py [--rows 20000] [--chunks 300] [--reps 2] [--data DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PIPELINES = {"zarr": "zarr.core.codec_pipeline.BatchedCodecPipeline", "zarrs": "zarrs.ZarrsCodecPipeline"}
OPS = ("write", "read", "random_chunks", "check")


def seed_rows(seed: Path) -> dict[str, np.ndarray]:
    from rise_data.store import open_store
    from rise_data.store.format import STEP_SCALARS

    s = open_store(str(seed))
    return {name: s.read(name) for name in ("obs", "frame", *STEP_SCALARS)}


def write_store(path: Path, seed: Path, rows: int) -> float:
    """A valid rise-layout store of the seed tiled to ``rows`` (whole tiles) written through zarr's API."""
    from rise_data.store import create_store, open_store
    from rise_data.store.checksums import block_rows
    from rise_data.store.format import EPISODE_ARRAYS

    src = open_store(str(seed))
    data = seed_rows(seed)
    ep = src.episodes()
    n, e = len(data["obs"]), src.num_episodes
    tiles = np.arange(rows // n)
    t0 = time.perf_counter()
    # "fast": zarr's own LocalStore, which zarrs writes to; rise's default "safe" store is a Python
    # LocalStore subclass that zarrs leaves to zarr-python's pipeline (its writes keep their fsync order)
    store = create_store(path, src.env, src.env["obs_shape"], src.env["frame_shape"], durability="fast")
    for name, arr in store.step_arrays():
        arr.resize((len(tiles) * n, *arr.shape[1:]))
        step = block_rows(arr)
        for s in range(0, arr.shape[0], step):
            i = np.arange(s, min(arr.shape[0], s + step))
            rows_of = data[name][i % n]
            arr[i[0] : i[-1] + 1] = rows_of + (i // n) * e if name == "episode_id" else rows_of
    for name in EPISODE_ARRAYS:
        a = store.group[f"episodes/{name}"]
        a.resize((len(tiles) * e,))
        a[:] = np.tile(ep[name], len(tiles)) + (np.repeat(tiles, e) * n if name == "start" else 0)
    store.write_meta(rows=len(tiles) * n, episodes=len(tiles) * e)
    return time.perf_counter() - t0


def child(args) -> None:
    """One pipeline's timings on its own store (the pipeline comes from ZARR_CODEC_PIPELINE__PATH)."""
    import zarr

    from rise_data.store import open_store
    from rise_data.store.check import check_store
    from rise_data.store.checksums import block_rows

    store_path = Path(args.store)
    shutil.rmtree(store_path, ignore_errors=True)
    out = {"pipeline": zarr.config.get("codec_pipeline.path")}
    out["write"] = write_store(store_path, Path(args.seed), args.rows)
    s = open_store(str(store_path))
    t0 = time.perf_counter()
    for name, arr in s.step_arrays():
        step = block_rows(arr)
        for a in range(0, s.rows, step):
            s.read(name, a, a + step)
    out["read"] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for name in ("obs", "frame"):
        c = s.array(name).chunks[0]
        for k in rng.integers(0, s.rows // c, args.chunks):
            s.read(name, int(k) * c, int(k + 1) * c)
    out["random_chunks"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    problems = [p for p in check_store(str(store_path)) if p.severity == "error"]
    if problems:
        raise SystemExit(f"check: {problems[0]}")
    out["check"] = time.perf_counter() - t0
    print(json.dumps(out))


def file_hashes(path: Path) -> dict[str, str]:
    """sha256 of every file of a store; the root zarr.json without its creation time."""
    out = {}
    for p in sorted(path.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        if p == path / "zarr.json":
            meta = json.loads(data)
            meta["attributes"]["rise"].pop("created", None)
            data = json.dumps(meta, sort_keys=True).encode()
        out[p.relative_to(path).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def run(pipeline: str, store: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--child", "--store", str(store), "--seed", str(args.seed)]
    cmd += ["--rows", str(args.rows), "--chunks", str(args.chunks)]
    env = {**os.environ, "ZARR_CODEC_PIPELINE__PATH": PIPELINES[pipeline]}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{pipeline} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["pipeline"] != PIPELINES[pipeline]:
        raise SystemExit(f"{pipeline}: the child ran {out['pipeline']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--chunks", type=int, default=300)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--data")
    ap.add_argument("--seed")  # a Pong store to tile (default: collect 4000 rows here)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--store")
    args = ap.parse_args()
    if args.child:
        return child(args)
    data = Path(args.data or tempfile.mkdtemp())
    if args.seed is None:
        from rise_data.collect import CollectConfig, collect

        args.seed = str(data / "seed.zarr")
        if not Path(args.seed).exists():
            collect(CollectConfig("ALE/Pong-v5", args.seed, steps=4000, num_envs=8, seed=0, progress=False))
    best = {p: dict.fromkeys(OPS, float("inf")) for p in PIPELINES}
    for _ in range(args.reps):
        for p in PIPELINES:
            out = run(p, data / f"{p}.zarr", args)
            best[p] = {op: min(best[p][op], out[op]) for op in OPS}
    hashes = {p: file_hashes(data / f"{p}.zarr") for p in PIPELINES}
    same = hashes["zarr"] == hashes["zarrs"]
    rows = (args.rows // len(seed_rows(Path(args.seed))["obs"])) * len(seed_rows(Path(args.seed))["obs"])
    print(f"{rows} rows of real Pong (obs + RGB frames + scalars), zstd 1; best of {args.reps}")
    print(f"{'op':14s} {'zarr s':>8s} {'zarrs s':>8s} {'zarr/zarrs':>10s}")
    for op in OPS:
        print(
            f"{op:14s} {best['zarr'][op]:8.2f} {best['zarrs'][op]:8.2f} {best['zarr'][op] / best['zarrs'][op]:10.2f}"
        )
    print(f"files: {len(hashes['zarr'])} vs {len(hashes['zarrs'])}; every file byte-equal: {same}")
    ratios = {f"{op}_zarr_over_zarrs": round(best["zarr"][op] / best["zarrs"][op], 3) for op in OPS}
    machine = f"cpu ({os.cpu_count()} cores), load {os.getloadavg()[0]:.2f}, {rows} rows"
    seconds = {p: {op: round(v, 3) for op, v in best[p].items()} for p in PIPELINES}
    print(json.dumps({"ratios": ratios, "seconds": seconds, "bytes_equal": same, "machine": machine}))
    if not args.data:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
