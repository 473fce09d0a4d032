"""StoreDataset against the loaders users know, on the same rows and the same window: items/s side by side.

The rows: ``--rows`` rows of real ALE Pong (the 84x84 gray view; a seed collected with the random policy,
its episodes replicated as ``benchmarks/scale.py`` does), appended through rise's writer. An item is a
window of ``--window`` consecutive gray frames of one episode plus the action at its last row; a batch
is ``--batch`` items drawn at random (with replacement where the loader samples so).

- ``StoreDataset(keys=("obs_stack", "action"), frame_stack=L)`` in a ``DataLoader``, reading through its
  memmap cache (``cache_dir``, built once before timing) and through its default chunk LRU (256 MB); 0
  and 2 workers; ``batch_size=--batch`` with shuffle (items collated), or a ``BatchSampler`` with
  ``batch_size=None`` (``ds[indices]`` returns the batch), shuffled or in row order (``seq``, beside
  Minari's in-order iteration). Windows at an episode's start repeat its first frame (the replay's
  padding) where the others skip them.
- TorchRL: ``LazyMemmapStorage`` holding the same rows (filled with ``extend``) in a ``ReplayBuffer``
  with ``SliceSampler(slice_len=L, traj_key="episode", strict_length=True)``, ``batch_size=batch*L``
  (``batch`` slices per sample).
- Minari: the store exported with ``rise-data export`` (Minari's own HDF5 writer);
  ``sample_episodes(batch)`` with one random window cut from each sampled episode, and
  ``iterate_episodes()`` cutting every window of each episode in order, ``batch`` at a time.

Each loader runs ``--seconds`` after one warm-up batch, in this process (the StoreDataset workers
aside), ``--reps`` times interleaved, best kept; torch and numpy use one thread.
Usage: python benchmarks/loaders.py [--rows 100000] [--window 16] [--batch 64] [--seconds 3] [--reps 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from _common import print_ratios
from scale import replicated, seed_episodes, seed_store


def build_store(data: Path, rows: int) -> Path:
    """``rows`` replicated Pong rows (gray view only), appended one episode per commit."""
    from rise_data.store import create_store, open_store

    path = data / f"loaders-{rows}.zarr"
    if path.exists():
        return path
    seed = seed_store(data, 4000)
    env = open_store(str(seed)).env
    store = create_store(path, env, tuple(env["obs_shape"]), None, durability="fast")
    for ep in replicated(seed_episodes(seed, frames=False), rows):
        store.append_episodes([ep])
    return path


def timed(batches: Iterator[int], seconds: float) -> float:
    """Items per second of ``batches`` (each yields its item count) over ``seconds``, after one batch."""
    next(batches)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += next(batches)
    return n / (time.perf_counter() - t0)


def store_dataset(path: Path, args, workers: int, cache_dir: str | None, how: str) -> Iterator[int]:
    """``how``: ``items`` (``batch_size=64``: items collated), ``batched`` (a ``BatchSampler``,
    ``batch_size=None``: ``ds[indices]`` is the batch) or ``seq`` (batched, in row order)."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

    from rise_data.torch import StoreDataset

    ds = StoreDataset(str(path), ("obs_stack", "action"), frame_stack=args.window, cache_dir=cache_dir)
    g = torch.Generator().manual_seed(0)
    kw = {"num_workers": workers, "persistent_workers": workers > 0}
    if how == "items":
        loader = DataLoader(ds, batch_size=args.batch, shuffle=True, generator=g, **kw)
    else:
        order = RandomSampler(ds, generator=g) if how == "batched" else SequentialSampler(ds)
        loader = DataLoader(ds, batch_size=None, sampler=BatchSampler(order, args.batch, False), **kw)
    while True:
        for b in loader:
            assert b["obs_stack"].shape[1:] == (args.window, 84, 84)
            yield len(b["row"])


def torchrl_buffer(path: Path, args, scratch: Path):
    """A TorchRL replay buffer over the store's rows: LazyMemmapStorage + SliceSampler."""
    from tensordict import TensorDict
    from torchrl.data import LazyMemmapStorage, ReplayBuffer, SliceSampler

    from rise_data.store import open_store

    s = open_store(str(path))
    shutil.rmtree(scratch, ignore_errors=True)
    rb = ReplayBuffer(
        storage=LazyMemmapStorage(s.rows, scratch_dir=str(scratch)),
        sampler=SliceSampler(slice_len=args.window, traj_key="episode", strict_length=True),
        batch_size=args.batch * args.window,
    )
    step = 65536
    for a in range(0, s.rows, step):
        obs = torch.from_numpy(s.read("obs", a, a + step))
        td = TensorDict(
            {
                "obs": obs,
                "action": torch.from_numpy(s.read("action", a, a + step)),
                "episode": torch.from_numpy(s.read("episode_id", a, a + step)),
            },
            batch_size=[len(obs)],
        )
        rb.extend(td)
    return rb


def torchrl_batches(rb, args) -> Iterator[int]:
    while True:
        b = rb.sample()
        obs = b["obs"].reshape(args.batch, args.window, 84, 84)
        yield obs.shape[0]


def minari_dataset(path: Path, dataset_id: str):
    import minari

    from rise_data.share.h5io import ExportConfig
    from rise_data.share.minari_io import export_minari

    try:
        return minari.load_dataset(dataset_id)
    except Exception:
        export_minari(ExportConfig(store=str(path), output=f"minari:{dataset_id}", format="minari"))
        return minari.load_dataset(dataset_id)


def minari_sample(ds, args, rng: np.random.Generator) -> Iterator[int]:
    """``sample_episodes(batch)``, one random window of each."""
    while True:
        eps = [e for e in ds.sample_episodes(args.batch) if len(e.actions) + 1 >= args.window]
        out = np.empty((len(eps), args.window, 84, 84), np.uint8)
        for i, e in enumerate(eps):
            obs = e.observations["obs"]
            a = int(rng.integers(0, len(obs) - args.window + 1))
            out[i] = obs[a : a + args.window]
        yield len(eps)


def minari_iterate(ds, args) -> Iterator[int]:
    """``iterate_episodes()``: every window of each episode, in order, ``batch`` windows at a time."""
    while True:
        for e in ds.iterate_episodes():
            obs = e.observations["obs"]
            ends = np.arange(args.window - 1, len(obs))
            for a in range(0, len(ends), args.batch):
                rows = ends[a : a + args.batch, None] + np.arange(1 - args.window, 1)
                yield len(obs[rows])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--data", default="/work/scale-data")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MINARI_DATASETS_PATH", str(data / "minari"))
    path = build_store(data, args.rows)
    cache = str(data / "loaders-cache")
    rb = torchrl_buffer(path, args, data / "torchrl-scratch")
    mds = minari_dataset(path, f"rise-bench/pong{args.rows}-v0")
    rng = np.random.default_rng(0)
    loaders: dict[str, Callable[[], Iterator[int]]] = {
        "storedataset_memmap_w0": lambda: store_dataset(path, args, 0, cache, "items"),
        "storedataset_memmap_w2": lambda: store_dataset(path, args, 2, cache, "items"),
        "storedataset_memmap_batched_w0": lambda: store_dataset(path, args, 0, cache, "batched"),
        "storedataset_memmap_batched_w2": lambda: store_dataset(path, args, 2, cache, "batched"),
        "storedataset_memmap_seq_w0": lambda: store_dataset(path, args, 0, cache, "seq"),
        "storedataset_lru_w0": lambda: store_dataset(path, args, 0, None, "items"),
        "storedataset_lru_w2": lambda: store_dataset(path, args, 2, None, "items"),
        "torchrl_slice": lambda: torchrl_batches(rb, args),
        "minari_sample_episodes": lambda: minari_sample(mds, args, rng),
        "minari_iterate_episodes": lambda: minari_iterate(mds, args),
    }
    best = dict.fromkeys(loaders, 0.0)
    for _ in range(args.reps):
        for name, make in loaders.items():
            it = make()
            best[name] = max(best[name], timed(it, args.seconds))
            it.close()  # ends a DataLoader's workers before the next loader runs
    for name, v in best.items():
        print(f"{name:26s} {v:12,.0f} items/s")
    random = [k for k in best if k.startswith("storedataset_memmap") and "seq" not in k]
    ours = max(best[k] for k in random)
    ratios = {
        "storedataset_over_torchrl_slice": round(ours / best["torchrl_slice"], 3),
        "storedataset_over_minari_sample": round(ours / best["minari_sample_episodes"], 3),
        "storedataset_seq_over_minari_iterate": round(
            best["storedataset_memmap_seq_w0"] / best["minari_iterate_episodes"], 3
        ),
        "storedataset_lru_over_memmap_w0": round(
            best["storedataset_lru_w0"] / best["storedataset_memmap_w0"], 3
        ),
    }
    items = {k: round(v) for k, v in best.items()}
    print_ratios(ratios, items_per_s=items, rows=args.rows, window=args.window, batch=args.batch)


if __name__ == "__main__":
    main()
