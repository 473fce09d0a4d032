"""What the page shows, read from a store through its public API: the overview and one episode at a time.

Memory stays bounded: the overview reads the episode index (one entry per episode) and two flags per
episode; an episode is read in blocks of whole chunks (about 16 MB), keeping only the steps it shows.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import cv2
import numpy as np

from rise_data.share.edit import parse_episode_list
from rise_data.store import Store, StoreError
from rise_data.store.checksums import READ_BLOCK_BYTES, block_rows
from rise_data.store.format import store_kind
from rise_data.view.analysis import cosine_similarity, histogram, project_2d, quantize, shown_steps

SCALARS = ("action", "reward", "terminated", "truncated")


def select_episodes(store: Store, text: str | None, returns: np.ndarray) -> list[int]:
    """The episodes to show: ``text`` (``0,3,5-9``) or, by default, the first, last, best and worst."""
    n = store.num_episodes
    if n == 0:
        raise StoreError(
            f"{store.path} holds no episodes; collect some first: rise-data collect ENV_ID {store.path}"
        )
    if text is None:
        return sorted({0, n - 1, int(np.argmax(returns)), int(np.argmin(returns))})
    chosen = sorted(set(parse_episode_list(text)))
    missing = [e for e in chosen if not 0 <= e < n]
    if missing or not chosen:
        raise StoreError(
            f"{store.path} has no episode {missing[0] if missing else text!r} (it has {n}: 0-{n - 1}); "
            "pick --episodes within that range"
        )
    return chosen


def _episode_ends(store: Store, ep: dict) -> dict:
    """How the episodes ended, from the two flags on each episode's last row (a coordinate read)."""
    last = (ep["start"] + ep["length"]).astype(np.int64)
    term = np.asarray(store.array("terminated").get_coordinate_selection(last), dtype=bool)
    trunc = np.asarray(store.array("truncated").get_coordinate_selection(last), dtype=bool)
    return {"terminated": int(term.sum()), "truncated": int(trunc.sum()), "flags": term}


def _integrity(store: Store) -> dict:
    """The recorded seal: which arrays it covers, and whether each covers every committed row now."""
    arrays = {}
    for name, c in store.checksums.items():
        now = store.checksum_rows(name) if store.has_array(name) else None
        arrays[name] = {
            "rows": int(c["rows"]),
            "rows_now": now,
            "sha256": c["sha256"],
            "current": c["rows"] == now,
        }
    meta = store.meta.get("checksums") or {}
    return {
        "sealed": bool(arrays),
        "time": meta.get("time"),
        "algorithm": meta.get("algorithm"),
        "arrays": arrays,
    }


def _embedding_record(store: Store, name: str) -> dict:
    meta = store.embedding_meta(name)
    arr = store.array(f"embeddings/{name}")
    return {
        "name": name,
        "dim": int(arr.shape[1]),
        "dtype": str(arr.dtype),
        "rows_done": int(meta.get("rows_done", 0)),
        **{k: meta.get(k) for k in ("encoder", "versions", "created")},
    }


def missing_parts(store: Store) -> list[str]:
    """What a viewer would want but this store lacks, each with how to add it."""
    out = []
    if not store.has_frames:
        out.append(
            "no RGB frames (collected with --no-frames): the player shows the agent's gray view only; "
            "collect again without --no-frames to see them"
        )
    if not store.embedding_names():
        out.append(f"no embeddings arrays: add one with rise-data encode {store.path} --encoder NAME")
    return out


def overview(store: Store, shown: list[int], ep: dict) -> dict:
    """The page's overview: env spec, sizes, histograms, how episodes ended, embeddings, seal, card."""
    ends = _episode_ends(store, ep)
    card = store.meta.get("card") or {}
    return {
        "store": store.path,
        "kind": store_kind(store.path),
        "format": f"{store.meta['format']} v{store.meta['format_version']}",
        "created": store.meta.get("created"),
        "rise_version": store.meta.get("rise_version"),
        "env": store.env,
        "rows": store.rows,
        "episodes": store.num_episodes,
        "steps": int(np.sum(ep["length"])),
        "has_frames": store.has_frames,
        "returns": {"hist": histogram(ep["return"]), **_summary(ep["return"])},
        "lengths": {"hist": histogram(ep["length"]), **_summary(ep["length"])},
        "ends": {"terminated": ends["terminated"], "truncated": ends["truncated"]},
        "embeddings": [_embedding_record(store, n) for n in store.embedding_names()],
        "integrity": _integrity(store),
        "card": {k: card.get(k) for k in ("id", "author", "license", "description") if card.get(k)},
        "missing": missing_parts(store),
        "history": [h.get("command") for h in store.meta.get("history", [])],
        "shown": [_episode_row(ep, ends["flags"], e) for e in shown],
    }


def _summary(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def _episode_row(ep: dict, terminated: np.ndarray, e: int) -> dict:
    return {
        "episode": e,
        "start": int(ep["start"][e]),
        "length": int(ep["length"][e]),
        "return": float(ep["return"][e]),
        "end": "terminated" if terminated[e] else "truncated",
        "env_index": int(ep["env_index"][e]),
        "file": episode_file(e),
    }


def episode_file(e: int) -> str:
    return f"episodes/{e:06d}.js"


def png_data_url(img: np.ndarray) -> str:
    """A lossless PNG data URL of a uint8 gray (H, W) or RGB (H, W, 3) image."""
    bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)  # cv2 writes BGR
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {img.shape} as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def shown_rows(
    store: Store, name: str, start: int, steps: np.ndarray, budget: int = READ_BLOCK_BYTES
) -> Iterator[np.ndarray]:
    """Rows ``start + steps`` (ascending) of array ``name``, read in blocks of whole chunks of ~``budget`` bytes."""
    arr = store.array(name)
    block = block_rows(arr, budget)
    rows = start + steps
    lo = start - start % arr.chunks[0]
    while lo <= rows[-1]:
        hi = lo + block
        pick = rows[(rows >= lo) & (rows < hi)]
        if pick.size:
            data = store.read(name, int(pick[0]), int(pick[-1]) + 1)
            yield from data[pick - pick[0]]
        lo = hi


def episode_data(store: Store, row: dict, max_frames: int, sim_steps: int) -> dict:
    """One episode as the page draws it: per-step scalars, the shown frames, each embeddings analysis."""
    start, n = row["start"], row["length"] + 1
    steps = shown_steps(n, max_frames)
    out = dict(row)
    for name in SCALARS:
        values = store.read(name, start, start + n)
        out[name] = [int(v) if name != "reward" else float(v) for v in values]
    out["frame_steps"] = [int(s) for s in steps]
    out["gray"] = [png_data_url(img) for img in shown_rows(store, "obs", start, steps)]
    out["rgb"] = (
        [png_data_url(img) for img in shown_rows(store, "frame", start, steps)] if store.has_frames else None
    )
    out["embeddings"] = {
        name: embedding_views(store, name, start, n, sim_steps) for name in store.embedding_names()
    }
    return out


def embedding_views(store: Store, name: str, start: int, n: int, sim_steps: int) -> dict:
    """An episode's similarity matrix (on at most ``sim_steps`` steps) and its 2-D projection (every step)."""
    done = int(store.embedding_meta(name).get("rows_done", 0))
    if done < start + n:
        return {"missing": f"rows {max(done, start)}-{start + n - 1} are not encoded yet (rows_done {done})"}
    emb = store.read(f"embeddings/{name}", start, start + n).astype(np.float32)
    steps = shown_steps(n, sim_steps)
    codes, lo, hi = quantize(cosine_similarity(emb[steps]))
    proj, explained = project_2d(emb)
    return {
        "sim_steps": [int(s) for s in steps],
        "sim": base64.b64encode(codes.tobytes()).decode(),
        "sim_range": [lo, hi],
        "proj": [[round(float(x), 4), round(float(y), 4)] for x, y in proj],
        "explained": explained,
    }
