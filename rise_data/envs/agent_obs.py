"""The agent observation: RGB or gray frames -> square gray uint8 (ITU-R 601 gray, area resize).

The gray is cv2's (fixed point, rounded per pixel). The resize is area averaging (cv2's INTER_AREA) done
exactly: when a side shrinks by n_in/n_out = p/q in lowest terms, its area weights repeat every p input
pixels and are whole multiples of 1/q of a pixel (Atari 210x160 -> 84: rows 5 -> 2, columns 40 -> 21).
So each output pixel is an integer sum over at most p_rows x p_cols pixels divided by p_rows * p_cols:
a row pass with the integer row weights (one batched matmul), a column pass with the integer column
weights (one matrix product over every period of every row), both in float32, exact while the sums stay below
2^24, then rounding half up. cv2 computes the same average in float32 and rounds; it lands on the exact
value except at exact .5 ties, which it rounds up on Atari frames (equal there), and down now and then
on random noise (at most one level apart, well under 1 % of pixels). It costs a third of cv2's generic
fractional area path, which walks every source pixel in scalar loops. Shapes with a long period, and
enlargements, go to cv2.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

MAX_PERIOD = 64  # longer periods make the matmuls mostly zeros: cv2 is cheaper there
# p_rows * p_cols at most this: the sums (< 255 * 4096) are exact float32 integers, and float32's error in
# the final division (< 3e-5 at 255) stays below the half step 0.5 / den the rounding keeps clear of
MAX_DEN = 4096
# The products run as stacks of small matrix products: OpenBLAS (numpy's, and cv2.gemm's) runs a product
# of under 65536 * 4 multiply-adds on the calling thread, and above that wakes a thread pool that spins
# (sched_yield) against the env workers for the cores: 10x the CPU time of the work on a loaded 2-core box
ONE_THREAD_MACS = 1 << 17


def period_weights(n_in: int, n_out: int) -> np.ndarray:
    """int64 (q, p) with p/q = n_in/n_out in lowest terms: how many 1/q-pixel units of input pixel j
    (of one period) output pixel i covers. Each row sums to p; the pattern repeats every p inputs."""
    g = math.gcd(n_in, n_out)
    p, q = n_in // g, n_out // g
    i = np.arange(q)[:, None]
    j = np.arange(p)[None, :]
    return np.clip(np.minimum((i + 1) * p, (j + 1) * q) - np.maximum(i * p, j * q), 0, None)


@functools.lru_cache(maxsize=32)
def _plan(h: int, w: int, size: int) -> tuple[np.ndarray, np.ndarray, int, int] | None:
    """(row weights (q, p), column weights transposed (p, q), p_rows * p_cols, column periods per
    product) or None for cv2."""
    if h < size or w < size:
        return None
    rows, cols = period_weights(h, size), period_weights(w, size)
    den = rows.shape[1] * cols.shape[1]
    if max(rows.shape[1], cols.shape[1]) > MAX_PERIOD or den > MAX_DEN:
        return None
    per_frame = size * (w // cols.shape[1])  # column periods in one frame's rows
    fit = ONE_THREAD_MACS // cols.size
    group = max(d for d in range(1, per_frame + 1) if per_frame % d == 0 and d <= max(fit, 1))
    return rows.astype(np.float32), np.ascontiguousarray(cols.T, dtype=np.float32), den, group


def to_agent_obs(frames: np.ndarray, size: int) -> np.ndarray:
    """RGB (N,H,W,3) or gray (N,H,W) uint8 frames -> (N,size,size) gray uint8 agent observations.

    The N frames go through each step as one tall image or one batch, so the cost is a few calls, not N.
    """
    n, h, w = frames.shape[:3]
    if frames.ndim == 4:
        gray = cv2.cvtColor(np.ascontiguousarray(frames).reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY)
    else:
        gray = frames.reshape(n * h, w)
    if (h, w) == (size, size):
        return gray.reshape(n, size, size)
    plan = _plan(h, w, size)
    if plan is None:
        # INTER_AREA on the tall image: output row i*size starts exactly at input row i*h (same scale)
        return cv2.resize(gray, (size, n * size), interpolation=cv2.INTER_AREA).reshape(n, size, size)
    rows, cols_t, den, group = plan
    p_rows, p_cols = rows.shape[1], cols_t.shape[0]
    tall = np.matmul(rows, gray.reshape(-1, p_rows, w).astype(np.float32))  # (periods, q_rows, w)
    sums = np.matmul(tall.reshape(-1, group, p_cols), cols_t)  # (.., q_cols) per period: exact integers
    # round half up: the exact average is a multiple of 1/den; adding den // 2 + 0.5 before dividing lands
    # half a step (0.5 / den) away from every integer, so the truncation below cannot go the wrong way
    out = (sums + (den // 2 + 0.5)) * (1.0 / den)
    return out.astype(np.uint8).reshape(n, size, size)
