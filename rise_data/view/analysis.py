"""The pure math behind the page's plots: which steps it shows, histograms, similarity, a 2-D projection."""

from __future__ import annotations

import numpy as np


def shown_steps(n_rows: int, limit: int) -> np.ndarray:
    """int64 steps of an ``n_rows``-row episode the page shows: every k-th (k = ceil(n / limit)) and the last.

    The last row (the final observation) is always kept: whether an episode ends where it should is one of
    the things people look for.
    """
    if n_rows <= 0:
        return np.zeros(0, np.int64)
    stride = max(1, -(-n_rows // max(1, limit - 1))) if n_rows > limit else 1
    steps = np.arange(0, n_rows, stride, dtype=np.int64)
    return steps if steps[-1] == n_rows - 1 else np.append(steps, n_rows - 1)


def histogram(x: np.ndarray, bins: int = 30) -> dict:
    """``{"edges", "counts"}`` of ``x`` (integer-valued data gets one bin per value when that is few)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return {"edges": [], "counts": []}
    lo, hi = float(x.min()), float(x.max())
    if np.all(x == np.round(x)) and hi - lo < bins:
        edges = np.arange(lo - 0.5, hi + 1.5)  # one bin per integer value
    else:
        edges = np.histogram_bin_edges(x, bins=bins)
    counts, edges = np.histogram(x, bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def cosine_similarity(emb: np.ndarray) -> np.ndarray:
    """float32 (n, n): cosine similarity of every pair of rows (a zero row is similar to nothing: 0)."""
    x = np.asarray(emb, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return np.clip(x @ x.T, -1.0, 1.0)


def quantize(s: np.ndarray) -> tuple[np.ndarray, float, float]:
    """uint8 codes of ``s`` over its own range ``[lo, hi]``: ``round((s - lo) / (hi - lo) * 255)``.

    The page decodes ``lo + q / 255 * (hi - lo)``. Its own range, not [-1, 1]: embeddings of one episode
    are often all within a few hundredths of each other (e.g. downsampled pixels, all positive), and 8 bits
    over [-1, 1] would show them as one colour.
    """
    s = np.asarray(s, dtype=np.float64)
    lo, hi = (float(s.min()), float(s.max())) if s.size else (0.0, 0.0)
    if hi <= lo:
        return np.zeros(s.shape, np.uint8), lo, hi
    return np.round((s - lo) / (hi - lo) * 255).astype(np.uint8), lo, hi


def project_2d(emb: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The rows' first two principal components (float32 (n, 2)) and the variance fraction each explains."""
    x = np.asarray(emb, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[0] < 2 or not np.any(x):
        return np.zeros((x.shape[0], 2), np.float32), [0.0, 0.0]
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros_like(comps)])
    var = s**2
    explained = [float(v / var.sum()) for v in np.append(var, 0.0)[:2]]
    return (x @ comps.T).astype(np.float32), explained
