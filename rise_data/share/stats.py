"""Normalisation statistics of a store, computed streaming and written into its attributes.

``rise-data stats STORE`` records:

- root attribute ``rise.stats``: ``obs`` and ``frame`` (exact: from a 256-bin histogram of the uint8
  values; ``frame`` also per RGB channel), ``reward`` over the rows that carry an action (the padding
  zeros of last rows are left out), episode ``return`` and ``length``; ``rows``/``episodes`` say what
  they cover, so a consumer can tell stale statistics from current ones.
- each embeddings array's ``rise.stats``: per-dimension ``mean``/``std`` (float64 accumulation,
  Chan's parallel update), ``min``/``max`` and ``quantiles`` (from a per-dimension histogram of
  ``bins`` bins between min and max: each quantile is within one bin width, ``(max - min) / bins``).

Reading is chunk by chunk (~16 MB at a time); embeddings take two passes (range, then histogram).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from rise_data.options import ConfigError, param
from rise_data.store import Store, StoreError
from rise_data.store.checksums import block_rows
from rise_data.store.format import ATTR, now_iso

QUANTILES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)


@dataclass(frozen=True)
class StatsConfig:
    store: str = param(help="Store directory, packed .zip or URL (read-only: print only).")
    bins: int = param(1024, "Histogram bins per embedding dimension (quantile resolution).")
    write: bool = param(True, "Record them in the store's attributes.")
    progress: bool = param(False, "Show a progress bar.")

    def __post_init__(self) -> None:
        if self.bins < 2:
            raise ConfigError("--bins must be at least 2")


def _from_hist(counts: np.ndarray) -> dict:
    """mean/std/min/max (+ quantiles) of uint8 values from their 256-bin histogram (exact)."""
    n = int(counts.sum())
    if n == 0:
        return {"count": 0}
    v = np.arange(256, dtype=np.float64)
    mean = float((counts * v).sum() / n)
    var = float((counts * (v - mean) ** 2).sum() / n)
    nz = np.flatnonzero(counts)
    cdf = np.cumsum(counts)
    q = {str(p): int(np.searchsorted(cdf, p * n, side="left")) for p in QUANTILES}
    return {
        "count": n,
        "mean": mean,
        "std": var**0.5,
        "min": int(nz[0]),
        "max": int(nz[-1]),
        "quantiles": q,
    }


def _uint8_stats(store: Store, name: str) -> dict:
    arr = store.array(name)
    channels = arr.shape[-1] if name == "frame" and arr.ndim == 4 else 0
    counts = np.zeros((max(channels, 1), 256), np.int64)
    step = block_rows(arr)
    for s in range(0, store.rows, step):
        x = store.read(name, s, s + step)
        if channels:
            for c in range(channels):
                counts[c] += np.bincount(x[..., c].ravel(), minlength=256)
        else:
            counts[0] += np.bincount(x.ravel(), minlength=256)
    out = _from_hist(counts.sum(axis=0))
    if channels:
        out["channels"] = [_from_hist(counts[c]) for c in range(channels)]
    return out


class _Moments:
    """Streaming count/mean/M2/min/max per column (Chan et al.'s parallel combination, float64)."""

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)

    def update(self, x: np.ndarray) -> None:
        if len(x) == 0:
            return
        x = x.astype(np.float64, copy=False)
        nb = len(x)
        mb = x.mean(axis=0)
        m2b = ((x - mb) ** 2).sum(axis=0)
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + m2b + delta**2 * self.n * nb / n
        self.n = n
        self.min = np.minimum(self.min, x.min(axis=0))
        self.max = np.maximum(self.max, x.max(axis=0))

    def result(self) -> dict:
        if self.n == 0:
            return {"count": 0}
        return {
            "count": self.n,
            "mean": self.mean.tolist(),
            "std": np.sqrt(self.m2 / self.n).tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
        }


def _scalar(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {"count": 0}
    x = x.astype(np.float64)
    return {
        "count": len(x),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def _reward_stats(store: Store) -> dict:
    m = _Moments(1)
    nonzero = 0
    step = 1 << 20
    for s in range(0, store.rows, step):
        r = store.read("reward", s, s + step)
        last = store.read("is_last", s, s + step)
        r = r[~last]
        m.update(r[:, None])
        nonzero += int(np.count_nonzero(r))
    out = m.result()
    if out["count"]:
        out = {k: (v[0] if isinstance(v, list) else v) for k, v in out.items()}
        out["nonzero_fraction"] = nonzero / out["count"]
    return out


def embedding_stats(store: Store, name: str, bins: int = 1024) -> dict:
    """Per-dimension mean/std/min/max and histogram quantiles of a complete embeddings array (two passes)."""
    arr = store.require_embedding(name)
    rows, dim = store.rows, arr.shape[1]
    step = block_rows(arr)
    m = _Moments(dim)
    for s in range(0, rows, step):
        x = arr[s : min(s + step, rows)]
        if not np.all(np.isfinite(x)):
            raise StoreError(f"embeddings '{name}' hold non-finite values near row {s}; run rise-data check")
        m.update(x)
    out = m.result()
    if not m.n:
        return out
    lo, hi = m.min, m.max
    width = np.where(hi > lo, (hi - lo) / bins, 1.0)
    counts = np.zeros(dim * bins, np.int64)
    offsets = np.arange(dim) * bins
    for s in range(0, rows, step):
        x = arr[s : min(s + step, rows)].astype(np.float64)
        idx = np.clip(((x - lo) / width).astype(np.int64), 0, bins - 1) + offsets
        counts += np.bincount(idx.ravel(), minlength=dim * bins)
    cdf = np.cumsum(counts.reshape(dim, bins), axis=1)
    quantiles = {}
    for p in QUANTILES:
        target = p * m.n
        b = np.minimum(np.sum(cdf < target, axis=1), bins - 1)  # first bin whose cdf reaches the target
        below = np.where(b > 0, cdf[np.arange(dim), b - 1], 0)
        inside = cdf[np.arange(dim), b] - below
        frac = np.where(inside > 0, (target - below) / np.maximum(inside, 1), 0.0)
        q = lo + (b + np.clip(frac, 0.0, 1.0)) * width
        quantiles[str(p)] = np.where(hi > lo, q, lo).tolist()
    out["quantiles"] = quantiles
    out["bins"] = bins
    return out


def compute_stats(store: Store, bins: int = 1024, progress: bool = False) -> tuple[dict, dict[str, dict]]:
    """(root statistics, {embedding name: statistics}) of a store's committed rows."""
    ep = store.episodes()
    complete = [
        n for n in store.embedding_names() if int(store.embedding_meta(n).get("rows_done", 0)) >= store.rows
    ]  # incomplete embeddings are left out: statistics would describe a prefix only
    passes = ["obs", "reward", *(["frame"] if store.has_frames else []), *complete]
    bar = tqdm(total=len(passes), unit="array", desc="stats", disable=not progress)
    root = {"time": now_iso(), "rows": store.rows, "episodes": store.num_episodes}
    root["return"], root["length"] = _scalar(ep["return"]), _scalar(ep["length"])
    emb = {}
    for name in passes:
        bar.set_postfix_str(name)
        if name in ("obs", "frame"):
            root[name] = _uint8_stats(store, name)
        elif name == "reward":
            root[name] = _reward_stats(store)
        else:
            meta = store.embedding_meta(name)
            emb[name] = {
                **embedding_stats(store, name, bins),
                "time": root["time"],
                "rows": store.rows,
                "created": meta.get("created"),
            }
        bar.update(1)
    bar.close()
    root["embeddings"] = sorted(emb)
    return root, emb


def write_stats(store: Store, root: dict, emb: dict[str, dict]) -> None:
    """Record statistics: per-embedding ones first, the root attribute (the commit) last."""
    for name, s in emb.items():
        arr = store.group[f"embeddings/{name}"]
        meta = dict(arr.attrs)[ATTR]
        arr.attrs[ATTR] = {**meta, "stats": s}
    store.write_meta(stats=root)


def stats(config: StatsConfig) -> tuple[dict, dict[str, dict], bool]:
    """Compute a store's statistics and (if it is a writable directory and ``write``) record them."""
    from rise_data.store import open_store

    store = open_store(config.store)
    root, emb = compute_stats(store, config.bins, config.progress)
    written = False
    if config.write and store.kind == "directory":
        from rise_data.store.lock import store_lock

        open_store(config.store, mode="a")  # writable, before its lock is taken
        with store_lock(config.store, "stats"):  # only while writing: computing reads committed rows
            store = open_store(config.store, mode="a")
            if store.rows != root["rows"]:
                raise StoreError(f"{store.path} changed while its statistics were computed; run again")
            write_stats(store, root, emb)
        written = True
    return root, emb, written


def format_stats(root: dict, emb: dict[str, dict]) -> str:
    def line(name: str, s: dict) -> str:
        if not s.get("count"):
            return f"  {name:<22} (no values)"
        return (
            f"  {name:<22} mean {s['mean']:.4g}  std {s['std']:.4g}  min {s['min']:.4g}  max {s['max']:.4g}"
        )

    lines = [f"statistics over {root['rows']} rows, {root['episodes']} episodes"]
    for name in ("obs", "frame", "reward", "return", "length"):
        if name in root:
            lines.append(line(name, root[name]))
    for c, s in enumerate(root.get("frame", {}).get("channels", [])):
        lines.append(line(f"frame[{'RGB'[c] if c < 3 else c}]", s))
    for name, s in emb.items():
        if not s.get("count"):
            continue
        mean, std = np.asarray(s["mean"]), np.asarray(s["std"])
        lines.append(
            f"  embeddings/{name:<11} dim {len(mean)}: mean of means {mean.mean():.4g}, mean std {std.mean():.4g}, "
            f"min {min(s['min']):.4g}, max {max(s['max']):.4g}, quantiles {', '.join(s['quantiles'])}"
        )
    return "\n".join(lines)
