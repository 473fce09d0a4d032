"""Every store stage at N/100, N/10 and N rows: rows/s, peak RSS and bytes on disk, and how they grow.

Frames are real ALE Pong frames: ``rise-data collect ALE/Pong-v5`` (random policy, ``--seed-steps`` rows,
8 envs) collects a seed store once; its episodes are then **replicated** (cycled, the last one cut as
truncated) to N rows, because collecting a million rows takes too long on 2 shared cores. Replication
does not flatter compression: zstd sees one chunk at a time, and a chunk of a replica starts at another
row offset than its original. Every store holds the 84x84 gray ``obs``; RGB ``frame`` rows are stored in
stores of up to ``--frames-max-rows`` rows (default: every size).

Stages, each in its own subprocess (peak RSS = ``ru_maxrss`` of that process and its children):

- ``append``: the seed's episodes appended one finished episode per commit through
  ``WritableStore.append_episodes`` (what collect's writer thread calls), into a store from ``create_store``;
- ``encode``: ``rise-data encode --encoder downsample`` (cheap, real: 16x16 area resize, 256-d float16);
- ``check`` (full: every chunk decoded), ``info``, ``view`` (the default page: first, last, best, worst
  episode), ``pack`` (.zip), ``export`` (HDF5, gzip 1);
- ``load_cold`` / ``load_warm``: the training load, ``StoreSource.open``: the obs memmap cache (built by the
  first, reused by the second), the scalars in RAM and the embeddings on the device (the CPU here);
- ``ds_{random,seq}_w{0,2}``: ``StoreDataset`` items/s (BC-style items: frame stack 4, action, context
  K=16 and its mask; batches of 64) for ``--seconds``, shuffled or in order, 0 or 2 workers.

Ratios: ``worst_per_row_cost`` is the largest (CPU seconds per row at N) / (CPU seconds per row at N/10)
over the stages (CPU time of the stage's process and its children: on 2 cores shared with other jobs,
wall time mostly measures the others; the worst wall-time ratio of the streaming stages is printed
beside it); ``worst_rss_growth`` the largest peak RSS at N / peak RSS at N/10 over the streaming stages
(all but the loads and the dataset, which hold per-row columns, the embeddings or a memmap's pages in
memory by design: the embeddings' bytes per row are printed). Goal: both <= 1.2. The default chunk-LRU
StoreDataset (``ds_random_w0_lru``) is left out of the first and given on its own: once a store outgrows
the LRU (256 MB), a random item decodes a chunk, by design (bounded memory); ``cache_dir`` is the path for
stores read at random.
Usage: python benchmarks/scale.py [--max-rows 100000] [--data /work/scale-data] [--frames-max-rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import print_ratios

STREAMING = ("append", "encode", "check", "info", "view", "pack", "export")
LOADS = ("load_cold", "load_warm")
DATASET = (*(f"ds_{order}_w{w}" for order in ("random", "seq") for w in (0, 2)), "ds_random_w0_lru")
STAGES = STREAMING + LOADS + DATASET


def du(path: Path) -> int:
    """Bytes of the files under ``path`` (a file or a folder)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss() -> int:
    """Peak resident bytes of this process (``VmHWM``) or of its largest waited-for child, if larger.

    Not ``ru_maxrss`` for this process: Linux keeps it across ``exec``, so a stage process would report
    the peak of the process that started it.
    """
    status = Path("/proc/self/status").read_text()
    me = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(me, kids) * 1024


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children (DataLoader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def start() -> tuple[float, float]:
    return time.perf_counter(), cpu_seconds()


def elapsed(t0: tuple[float, float]) -> dict:
    """Wall and CPU seconds since ``t0`` (from :func:`start`)."""
    return {"seconds": time.perf_counter() - t0[0], "cpu": cpu_seconds() - t0[1]}


# -- building a store from the seed ---------------------------------------------------------------
def seed_store(data: Path, steps: int) -> Path:
    """The seed store of real Pong rows, collected once into ``data``."""
    from rise_data.collect import CollectConfig, collect

    path = data / f"seed-{steps}.zarr"
    if not path.exists():
        collect(CollectConfig("ALE/Pong-v5", str(path), steps=steps, num_envs=8, seed=0, progress=False))
    return path


def seed_episodes(path: Path, frames: bool) -> list:
    """The seed's episodes in RAM (obs, frames, actions, rewards, how each ended)."""
    from rise_data.store import Episode, open_store

    s = open_store(str(path))
    ep = s.episodes()
    obs = s.read("obs")
    frame = s.read("frame") if frames else None
    action, reward, term = s.read("action"), s.read("reward"), s.read("terminated")
    out = []
    for start, length in zip(ep["start"], ep["length"], strict=True):
        a, b = int(start), int(start + length)
        out.append(
            Episode(
                obs=obs[a : b + 1],
                frame=None if frame is None else frame[a : b + 1],
                action=action[a:b],
                reward=reward[a:b],
                terminated=bool(term[b]),
                truncated=not bool(term[b]),
            )
        )
    return out


def replicated(seed: list, rows: int):
    """Episodes cycling through ``seed`` until ``rows`` rows; the last is cut (truncated) to fit exactly."""
    from rise_data.store import Episode

    i, left = 0, rows
    while left > 0:
        ep = seed[i % len(seed)]
        if ep.length + 1 > left:
            t = left - 1
            frame = None if ep.frame is None else ep.frame[: t + 1]
            ep = Episode(ep.obs[: t + 1], frame, ep.action[:t], ep.reward[:t], False, True)
        ep.env_index = i % 8
        yield ep
        left -= ep.length + 1
        i += 1


def stage_append(args) -> dict:
    from rise_data.store import create_store, open_store

    seed = open_store(str(args.seed))
    episodes = seed_episodes(args.seed, args.frames)
    base = peak_rss()
    frame_shape = tuple(seed.env["frame_shape"]) if args.frames else None
    t0 = start()
    store = create_store(args.store, seed.env, tuple(seed.env["obs_shape"]), frame_shape)
    for ep in replicated(episodes, args.rows):
        store.append_episodes([ep])  # one commit per finished episode, as collect's writer does
    store.log_write("benchmark-replicate", {"seed": str(args.seed), "rows": args.rows})
    return {**elapsed(t0), "base_rss": base, "bytes": du(Path(args.store))}


# -- the stages: each runs in a fresh process and returns {"seconds", "base_rss", "bytes", ...} ---------
def stage_encode(args) -> dict:
    from rise_data.encode import EncodeConfig, encode

    base = peak_rss()
    t0 = start()
    encode(EncodeConfig(store=args.store, encoder="downsample", device="cpu", progress=False))
    return {**elapsed(t0), "base_rss": base, "bytes": du(Path(args.store))}


def stage_check(args) -> dict:
    from rise_data.store.check import check_store

    base = peak_rss()
    t0 = start()
    problems = check_store(args.store)
    if any(p.severity == "error" for p in problems):
        raise SystemExit(f"check found errors: {problems[:3]}")
    return {**elapsed(t0), "base_rss": base, "bytes": du(Path(args.store))}


def stage_info(args) -> dict:
    from rise_data.store import open_store
    from rise_data.store.info import format_info, store_info

    base = peak_rss()
    t0 = start()
    format_info(store_info(open_store(args.store)))
    return {**elapsed(t0), "base_rss": base, "bytes": du(Path(args.store))}


def stage_view(args) -> dict:
    from rise_data.view import ViewConfig, write_view

    out = Path(args.work) / "page"
    shutil.rmtree(out, ignore_errors=True)
    base = peak_rss()
    t0 = start()
    write_view(ViewConfig(store=args.store, output=str(out), quiet=True))
    return {**elapsed(t0), "base_rss": base, "bytes": du(out)}


def one_file_stage(args, name: str, write) -> dict:
    """``write(store, output)`` timed into the file ``name`` of the work folder, its bytes kept, the file deleted."""
    out = Path(args.work) / name
    base = peak_rss()
    t0 = start()
    write(args.store, str(out))
    spent, size = elapsed(t0), du(out)
    out.unlink()
    return {**spent, "base_rss": base, "bytes": size}


def stage_pack(args) -> dict:
    from rise_data.share.pack import PackConfig, pack

    return one_file_stage(
        args, "store.zip", lambda store, out: pack(PackConfig(store=store, output=out, force=True))
    )


def stage_export(args) -> dict:
    from rise_data.share.h5io import ExportConfig, export_hdf5

    return one_file_stage(
        args, "store.h5", lambda store, out: export_hdf5(ExportConfig(store=store, output=out, force=True))
    )


def stage_load(args) -> dict:
    """The replay's store load: obs memmap cache (built if absent), scalars in RAM, embeddings on the device."""
    import torch

    from rise_agent.replay.config import WindowedConfig
    from rise_agent.replay.sources import StoreSource
    from rise_data.store import open_store

    cache = Path(args.work) / "obs-cache"
    if args.stage == "load_cold":
        shutil.rmtree(cache, ignore_errors=True)
    config = WindowedConfig(frame_stack=4, context_len=16)
    base = peak_rss()
    t0 = start()
    src = StoreSource.open(open_store(args.store), "downsample", config, torch.device("cpu"), cache)
    np.asarray(src.obs[-1])  # the cache is usable
    emb = src.emb.element_size() * src.emb.nelement()
    return {**elapsed(t0), "base_rss": base, "bytes": du(cache), "emb_bytes": emb}


def stage_dataset(args) -> dict:
    """``StoreDataset`` items/s for ``args.seconds`` after one warm-up batch (the memmap caches built)."""
    import torch
    from torch.utils.data import DataLoader

    from rise_data.torch import StoreDataset

    torch.set_num_threads(1)
    order, workers = args.stage.split("_")[1], int(args.stage.split("_")[2][1:])
    lru = args.stage.endswith("_lru")
    cache = None if lru else str(Path(args.work) / "obs-cache")  # the replay's cache folder: shared files
    base = peak_rss()
    keys = ("obs_stack", "action", "context", "context_mask")
    ds = StoreDataset(args.store, keys, context_len=16, cache_dir=cache)
    loader = DataLoader(
        ds,
        batch_size=64,
        shuffle=order == "random",
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=workers > 0,
    )
    it = iter(loader)
    next(it)
    n, t0 = 0, start()
    while time.perf_counter() - t0[0] < args.seconds:
        try:
            n += len(next(it)["row"])
        except StopIteration:
            it = iter(loader)
    wall = time.perf_counter() - t0[0]
    del it, loader  # the workers exit and are waited for, so their CPU time and peak RSS count
    return {**elapsed(t0), "seconds": wall, "items": n, "base_rss": base, "bytes": 0}


RUNNERS = {
    "append": stage_append,
    "encode": stage_encode,
    "check": stage_check,
    "info": stage_info,
    "view": stage_view,
    "pack": stage_pack,
    "export": stage_export,
    **dict.fromkeys(LOADS, stage_load),
    **dict.fromkeys(DATASET, stage_dataset),
}


def run_stage(args) -> None:
    """Child process: run one stage, print its result as one JSON line."""
    out = RUNNERS[args.stage](args)
    import gc

    gc.collect()
    print(json.dumps({**out, "peak_rss": peak_rss()}))


# -- the parent: sizes x stages, the table, the ratios ---------------------------------------------
def measure(stage: str, store: Path, rows: int, args, frames: bool) -> dict:
    cmd = [sys.executable, __file__, "--stage", stage, "--store", str(store), "--rows", str(rows)]
    cmd += ["--seed-path", str(args.seed_path), "--work", str(store.parent / "work")]
    cmd += ["--seconds", str(args.seconds)] + (["--frames"] if frames else [])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"stage {stage} at {rows} rows failed:\n{done.stderr[-3000:]}")
    res = json.loads(done.stdout.strip().splitlines()[-1])
    units = res.get("items", rows)
    res["per_row"] = res["cpu"] / max(units, 1)
    res["rows_per_s"] = units / res["seconds"]
    res["load"] = os.getloadavg()[0]
    return res


def row(stage: str, rows: int, frames: bool, r: dict) -> str:
    mb = 1 << 20
    grow = (r["peak_rss"] - r["base_rss"]) / mb
    extra = f"  emb {r['emb_bytes'] / rows:.0f} B/row" if "emb_bytes" in r else ""
    return (
        f"{stage:16s} {rows:>9,d} {'rgb+gray' if frames else 'gray':>8s} {r['rows_per_s']:>12,.0f} "
        f"{r['seconds']:>8.2f} {r['per_row'] * 1e6:>10.2f} {r['peak_rss'] / mb:>8.0f} {grow:>8.0f} {r['bytes'] / mb:>10.1f} {r['load']:>5.2f}{extra}"
    )


def ratios(results: dict, small: int, big: int) -> dict:
    """Per-row cost growth (CPU; every stage but the default-LRU one, reported on its own) and peak-RSS
    growth (streaming stages), N over N/10."""
    cost = {s: results[big][s]["per_row"] / results[small][s]["per_row"] for s in STAGES}
    lru = cost.pop("ds_random_w0_lru")
    rss = {s: results[big][s]["peak_rss"] / results[small][s]["peak_rss"] for s in STREAMING}
    wall = {s: results[big][s]["seconds"] / results[small][s]["seconds"] * small / big for s in STREAMING}
    worst_cost, worst_rss = max(cost, key=cost.get), max(rss, key=rss.get)
    return {
        "worst_per_row_cost": round(cost[worst_cost], 3),
        "worst_per_row_cost_stage": worst_cost,
        "worst_rss_growth": round(rss[worst_rss], 3),
        "worst_rss_growth_stage": worst_rss,
        "default_lru_random_per_row_cost": round(lru, 3),
        "worst_wall_per_row_cost_streaming": round(max(wall.values()), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-rows", type=int, default=100_000)
    ap.add_argument("--data", default="/work/scale-data")
    ap.add_argument("--seed-steps", type=int, default=4000)
    ap.add_argument("--frames-max-rows", type=int, default=None)  # default: RGB frames at every size
    ap.add_argument("--seconds", type=float, default=3.0)  # per StoreDataset variant
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--keep", action="store_true")  # keep the stores (default: deleted after each size)
    # a child process runs one stage:
    ap.add_argument("--stage", choices=STAGES)
    ap.add_argument("--store")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--seed-path", type=Path)
    ap.add_argument("--work")
    ap.add_argument("--frames", action="store_true")
    args = ap.parse_args()
    if args.stage:
        args.seed = args.seed_path
        return run_stage(args)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    args.seed_path = seed_store(data, args.seed_steps)
    sizes = [args.max_rows // 100, args.max_rows // 10, args.max_rows]
    stages = [s for s in STAGES if s in args.stages.split(",")]
    print(f"seed: {args.seed_path} (real ALE/Pong-v5 rows, random policy), replicated to each size")
    head = f"{'stage':16s} {'rows':>9s} {'arrays':>8s} {'rows/s':>12s} {'seconds':>8s} {'cpu us/row':>10s} {'peak MB':>8s} {'+MB':>8s} {'out MB':>10s} {'load':>5s}"
    print(head, flush=True)
    results: dict = {}
    for n in sizes:
        frames = args.frames_max_rows is None or n <= args.frames_max_rows
        store = data / f"scale-{n}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(data / "work", ignore_errors=True)
        (data / "work").mkdir()
        results[n] = {}
        for stage in stages:
            results[n][stage] = measure(stage, store, n, args, frames)
            print(row(stage, n, frames, results[n][stage]), flush=True)
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
            shutil.rmtree(data / "work", ignore_errors=True)
    table = {
        s: {
            n: {k: round(results[n][s][k], 9) for k in ("rows_per_s", "per_row", "peak_rss", "bytes")}
            for n in sizes
        }
        for s in stages
    }
    print_ratios(ratios(results, sizes[1], sizes[2]) if stages == list(STAGES) else {}, table=table)


if __name__ == "__main__":
    main()
