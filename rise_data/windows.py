"""Index arithmetic on the step-major store layout: n-step returns, frame stacks, context windows.

Layout (docs/store-format.md): rows are steps, episodes are contiguous, an episode of T actions has
T+1 rows. Row r holds obs_r; ``action[r]``/``reward[r]`` are the action taken at obs_r and the reward
that followed it (padding on the episode's last row). ``is_first``/``is_last`` mark an episode's
first/last row; ``terminated``/``truncated`` are True on the last row when the episode ended that way.

Everything here is vectorised numpy over a batch of row indices; no per-sample Python loops.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "context_window",
    "episode_ends",
    "episode_starts",
    "frame_stack_indices",
    "nstep_targets",
    "valid_sample_rows",
    "window_offsets",
]


def episode_starts(is_first: np.ndarray) -> np.ndarray:
    """int64[N]: the first row of each row's episode.

    Rows before the first ``is_first`` (a store whose head was cut) are treated as one episode
    starting at row 0.
    """
    is_first = np.asarray(is_first, dtype=bool)
    rows = np.arange(is_first.shape[0], dtype=np.int64)
    return np.maximum.accumulate(np.where(is_first, rows, 0)) if rows.size else rows


def episode_ends(is_last: np.ndarray) -> np.ndarray:
    """int64[N]: the last row of each row's episode, or N for rows of an unfinished trailing episode."""
    is_last = np.asarray(is_last, dtype=bool)
    n = is_last.shape[0]
    rows = np.arange(n, dtype=np.int64)
    if n == 0:
        return rows
    return np.minimum.accumulate(np.where(is_last, rows, n)[::-1])[::-1].copy()


def window_offsets(pos: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The one window rule: ``(offsets int64[B, length], valid bool[B, length])`` for items at episode
    positions ``pos`` (0 = the episode's first item).

    Slot j looks ``length - 1 - j`` items back (oldest first, the current item last). A slot before the
    episode start is invalid and its offset is clamped to ``-pos``, the episode's first item: gathering
    there repeats the first frame (BTR's frame-stack padding) and never crosses into another episode.
    The replay's store rows, its online ring and the actor's device rings all index with these offsets.
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    pos = np.asarray(pos, dtype=np.int64)
    back = np.arange(1 - length, 1, dtype=np.int64)[None, :]
    first = -pos[:, None]
    return np.maximum(back, first), back >= first


def _window(idx: np.ndarray, episode_start: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.asarray(idx, dtype=np.int64)
    offsets, valid = window_offsets(idx - np.asarray(episode_start, dtype=np.int64)[idx], length)
    return idx[:, None] + offsets, valid


def frame_stack_indices(
    idx: np.ndarray, episode_start: np.ndarray, stack: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the frame stack ending at ``idx``: ``(rows int64[B, stack], valid bool[B, stack])``.

    Slot j holds row ``idx - stack + 1 + j`` (oldest first, current frame last). Slots before the
    episode start are invalid and point at the episode's first row, so gathering ``rows`` as they are
    repeats the first frame there: BTR's padding (gymnasium 0.29 ``FrameStack`` fills the stack with the
    reset observation); ``valid`` says which slots are real. A gather never crosses episodes.
    """
    return _window(idx, episode_start, stack)


def context_window(idx: np.ndarray, episode_start: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the K-step context window ending at ``idx``: ``(rows int64[B, K], mask bool[B, K])``.

    Same convention as :func:`frame_stack_indices`: left-padded, current frame at index K-1, mask
    False (and row clamped to the episode's first row) on slots before the episode start.
    """
    return _window(idx, episode_start, k)


def nstep_targets(
    idx: np.ndarray,
    reward: np.ndarray,
    gamma: float,
    n: int,
    is_last: np.ndarray,
    terminated: np.ndarray,
    episode_end: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n-step return, bootstrap row and bootstrap discount for transitions starting at rows ``idx``.

    With ``m = min(n, last_row(idx) - idx)`` (the steps left before the episode's last row):

    * ``ret = sum_{k<m} gamma^k reward[idx + k]``
    * ``next_idx = idx + m``, the row whose observation is the bootstrap state
    * ``discount = gamma^m``, or 0 if the episode terminated at ``next_idx`` (a terminal state has
      value 0; a truncated one, or an ordinary state reached after n steps, is bootstrapped).

    ``idx`` must not be a last row, and an unfinished trailing episode must have ``idx + n`` rows
    inside the arrays (see :func:`valid_sample_rows`). ``episode_end`` (from :func:`episode_ends`) may
    be passed to avoid recomputing it per batch.
    """
    idx = np.asarray(idx, dtype=np.int64)
    reward = np.asarray(reward)
    is_last = np.asarray(is_last, dtype=bool)
    terminated = np.asarray(terminated, dtype=bool)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    num_rows = reward.shape[0]
    end = episode_ends(is_last) if episode_end is None else np.asarray(episode_end, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= num_rows):
        raise IndexError("idx out of range")
    if np.any(is_last[idx]):
        raise ValueError("idx contains last rows of episodes; they start no transition")

    m = np.minimum(n, end[idx] - idx)
    next_idx = idx + m
    if next_idx.size and next_idx.max() >= num_rows:
        raise ValueError("idx too close to the end of an unfinished episode for an n-step target")

    dtype = np.result_type(reward.dtype, np.float32)
    k = np.arange(n, dtype=np.int64)
    rows = np.minimum(idx[:, None] + k[None, :], num_rows - 1)
    weights = np.where(k[None, :] < m[:, None], np.asarray(gamma, dtype=dtype) ** k.astype(dtype), 0)
    ret = (reward[rows].astype(dtype) * weights.astype(dtype)).sum(axis=1)
    discount = np.where(terminated[next_idx], 0.0, np.asarray(gamma, dtype=dtype) ** m.astype(dtype))
    return ret.astype(dtype), next_idx, discount.astype(dtype)


def valid_sample_rows(is_last: np.ndarray, n: int | None = None) -> np.ndarray:
    """int64 rows that can start a transition: every row that is not an episode's last row.

    With ``n`` given, rows of an unfinished trailing episode (no last row yet, e.g. a live replay
    buffer) are kept only if their n-step target is complete, i.e. ``row + n <= N - 1``.
    """
    is_last = np.asarray(is_last, dtype=bool)
    ok = ~is_last
    if n is not None:
        num_rows = is_last.shape[0]
        rows = np.arange(num_rows, dtype=np.int64)
        unfinished = episode_ends(is_last) == num_rows
        ok &= ~unfinished | (rows + n <= num_rows - 1)
    return np.flatnonzero(ok).astype(np.int64)
