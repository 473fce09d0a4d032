"""``rise-data info``: what a store holds, as a dict (``--json``) or a short report."""

from __future__ import annotations

import os

import numpy as np

from rise_data.store import Store


def _stats(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {"count": 0}
    return {
        "count": len(x),
        "mean": float(np.mean(x)),
        "std": float(np.std(x)),
        "min": float(np.min(x)),
        "max": float(np.max(x)),
    }


def _folder_bytes(path: str) -> int:
    """Bytes of the files under ``path``, walked one directory at a time (memory independent of the count)."""
    total = 0
    with os.scandir(path) as entries:
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                total += _folder_bytes(e.path)
            elif e.is_file(follow_symlinks=False):
                total += e.stat(follow_symlinks=False).st_size
    return total


def _stored_bytes(store: Store, name: str, arr) -> int | None:
    """Bytes on disk of array ``name``: a directory walk for a store folder (zarr's listing holds every key
    of the array at once, so its memory grows with the number of chunks), else zarr's own count."""
    if store.kind == "directory":
        return _folder_bytes(os.path.join(store.path, name))
    try:
        return int(arr.nbytes_stored())
    except Exception:  # not every store backend can list sizes
        return None


def store_info(store: Store) -> dict:
    """Summary of a store: sizes, return statistics, arrays, embeddings with provenance, history."""
    ep = store.episodes()
    arrays = {}
    names = [
        n
        for n in (
            "obs",
            "frame",
            "action",
            "reward",
            "terminated",
            "truncated",
            "is_first",
            "is_last",
            "episode_id",
        )
        if store.has_array(n)
    ]
    names += [f"episodes/{k}" for k in ep] + [f"embeddings/{k}" for k in store.embedding_names()]
    for name in names:
        arr = store.array(name)
        arrays[name] = {
            "dtype": str(arr.dtype),
            "shape": list(arr.shape),
            "chunks": list(arr.chunks),
            "bytes": int(arr.nbytes),
            "stored_bytes": _stored_bytes(store, name, arr),
        }
    embeddings = {}
    for name in store.embedding_names():
        meta = store.embedding_meta(name)
        embeddings[name] = {k: v for k, v in meta.items() if k != "config"}
    return {
        "path": store.path,
        "format": f"{store.meta['format']} v{store.meta['format_version']}",
        "env": store.env,
        "rows": store.rows,
        "steps": int(np.sum(ep["length"])),
        "episodes": store.num_episodes,
        "returns": _stats(ep["return"]),
        "lengths": _stats(ep["length"]),
        "arrays": arrays,
        "embeddings": embeddings,
        "history": [
            {
                k: h.get(k)
                for k in ("command", "time", "start_row", "end_row", "seconds", "interrupted")
                if k in h
            }
            for h in store.meta.get("history", [])
        ],
        "created": store.meta.get("created"),
        "rise_version": store.meta.get("rise_version"),
    }


def _size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def format_info(info: dict) -> str:
    env = info["env"]
    r, ln = info["returns"], info["lengths"]
    lines = [
        f"{info['path']}  ({info['format']}, rise {info['rise_version']}, created {info['created']})",
        f"env        {env['id']}  " + " ".join(f"{k}={v}" for k, v in env.get("kwargs", {}).items()),
        f"rows       {info['rows']}  ({info['steps']} steps in {info['episodes']} episodes)",
    ]
    if r["count"]:
        lines.append(
            f"return     mean {r['mean']:.2f} ± {r['std']:.2f}  min {r['min']:.1f}  max {r['max']:.1f}"
        )
        lines.append(f"length     mean {ln['mean']:.1f}  min {ln['min']:.0f}  max {ln['max']:.0f}")
    lines.append("arrays")
    for name, a in info["arrays"].items():
        ratio = f"{a['bytes'] / a['stored_bytes']:.1f}x" if a["stored_bytes"] else "-"
        lines.append(
            f"  {name:<22} {a['dtype']:<8} {str(tuple(a['shape'])):<22} chunks {str(tuple(a['chunks'])):<20} "
            f"{_size(a['stored_bytes']):>9} ({ratio})"
        )
    lines.append(
        "embeddings" + ("" if info["embeddings"] else "  none (rise-data encode STORE --encoder NAME)")
    )
    for name, m in info["embeddings"].items():
        enc = m.get("encoder") if isinstance(m.get("encoder"), dict) else {}  # an EncoderSpec record
        pre = enc.get("preprocessing") or {}
        lines.append(
            f"  {name}: {enc.get('name')} dim {enc.get('dim')} {m.get('dtype')}, weights {enc.get('weights_id')}, "
            f"layer {enc.get('output_layer')}, "
            f"input {pre.get('source')} {pre.get('channels')} {pre.get('resolution') or 'native'}, "
            f"rows done {m['rows_done']}/{info['rows']}"
        )
    return "\n".join(lines)
