"""rise_data.windows against naive per-index loops on random step-major data."""

from __future__ import annotations

import numpy as np
import pytest

from rise_data.windows import (
    context_window,
    episode_ends,
    episode_starts,
    frame_stack_indices,
    nstep_targets,
    valid_sample_rows,
    window_offsets,
)

SEEDS = [0, 1, 2, 3, 4, 5]


def make_data(seed: int, n_episodes: int = 30, unfinished_tail: bool = False):
    """Random store columns: episode lengths 0..12 actions (a length-0 episode is a single row)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 13, size=n_episodes)
    lengths[:3] = [0, 1, 0]  # always cover the shortest episodes
    rng.shuffle(lengths)
    is_first, is_last, terminated, truncated = [], [], [], []
    for t in lengths:
        rows = t + 1
        first = np.zeros(rows, bool)
        first[0] = True
        last = np.zeros(rows, bool)
        last[-1] = True
        term = np.zeros(rows, bool)
        trunc = np.zeros(rows, bool)
        if rng.random() < 0.5:
            term[-1] = True
        else:
            trunc[-1] = True
        is_first.append(first)
        is_last.append(last)
        terminated.append(term)
        truncated.append(trunc)
    if unfinished_tail:
        rows = 9
        first = np.zeros(rows, bool)
        first[0] = True
        is_first.append(first)
        for lst in (is_last, terminated, truncated):
            lst.append(np.zeros(rows, bool))
    is_first, is_last = np.concatenate(is_first), np.concatenate(is_last)
    terminated, truncated = np.concatenate(terminated), np.concatenate(truncated)
    reward = rng.normal(size=is_first.shape[0]).astype(np.float32)
    reward[is_last] = 0.0  # padding row
    return is_first, is_last, terminated, truncated, reward


def naive_start(is_first, r):
    while r > 0 and not is_first[r]:
        r -= 1
    return r


def naive_end(is_last, r):
    while r < len(is_last) and not is_last[r]:
        r += 1
    return r


@pytest.mark.parametrize("seed", SEEDS)
def test_episode_starts_and_ends(seed):
    is_first, is_last, *_ = make_data(seed, unfinished_tail=seed % 2 == 1)
    starts, ends = episode_starts(is_first), episode_ends(is_last)
    assert starts.dtype == np.int64 and ends.dtype == np.int64
    for r in range(len(is_first)):
        assert starts[r] == naive_start(is_first, r)
        assert ends[r] == naive_end(is_last, r)


def test_episode_starts_headless_store():
    # rows before the first is_first belong to an episode taken to start at row 0
    assert episode_starts(np.array([False, False, True, False])).tolist() == [0, 0, 2, 2]
    assert episode_starts(np.zeros(0, bool)).shape == (0,)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("length", [1, 4, 7])
def test_windows_match_loop(seed, length):
    is_first, *_ = make_data(seed)
    starts = episode_starts(is_first)
    rng = np.random.default_rng(seed + 100)
    idx = rng.integers(0, len(is_first), size=64)
    for fn in (frame_stack_indices, context_window):
        rows, valid = fn(idx, starts, length)
        assert rows.shape == valid.shape == (64, length)
        for b, i in enumerate(idx):
            s = naive_start(is_first, i)
            for j in range(length):
                r = i - length + 1 + j
                assert valid[b, j] == (r >= s)
                assert rows[b, j] == (r if r >= s else s)
        assert valid[:, -1].all() and (rows[:, -1] == idx).all()  # current frame last, always valid


@pytest.mark.parametrize("length", [1, 4, 9])
def test_window_offsets_match_loop(length):
    pos = np.arange(0, 14)
    offsets, valid = window_offsets(pos, length)
    for b, p in enumerate(pos):
        for j in range(length):
            back = j - (length - 1)  # slot j looks length - 1 - j items back
            assert valid[b, j] == (p + back >= 0)
            assert offsets[b, j] == (back if p + back >= 0 else -p)  # before the start: the first item


def naive_nstep(i, reward, gamma, n, is_last, terminated):
    ret, m = 0.0, 0
    while m < n and not is_last[i + m]:
        ret += gamma**m * float(reward[i + m])
        m += 1
    j = i + m
    disc = 0.0 if terminated[j] else gamma**m
    return ret, j, disc


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 3, 5])
def test_nstep_targets_match_loop(seed, n):
    is_first, is_last, terminated, truncated, reward = make_data(seed)
    gamma = 0.97
    idx = valid_sample_rows(is_last)
    assert not is_last[idx].any()
    ret, next_idx, disc = nstep_targets(idx, reward, gamma, n, is_last, terminated)
    ret2, next2, disc2 = nstep_targets(idx, reward, gamma, n, is_last, terminated, episode_ends(is_last))
    np.testing.assert_array_equal(ret, ret2)
    for b, i in enumerate(idx):
        r, j, d = naive_nstep(i, reward, gamma, n, is_last, terminated)
        assert next_idx[b] == j
        assert ret[b] == pytest.approx(r, rel=1e-5, abs=1e-5)
        assert disc[b] == pytest.approx(d, rel=1e-6)
    # termination inside the window never bootstraps; truncation does
    last_hit = is_last[next_idx]
    assert (disc[last_hit & terminated[next_idx]] == 0).all()
    assert (disc[last_hit & truncated[next_idx]] > 0).all()


def test_nstep_small_hand_example():
    # episode A: 3 actions, terminated; episode B: 2 actions, truncated
    is_last = np.array([0, 0, 0, 1, 0, 0, 1], bool)
    terminated = np.array([0, 0, 0, 1, 0, 0, 0], bool)
    reward = np.array([1, 2, 4, 0, 8, 16, 0], np.float32)
    ret, nxt, disc = nstep_targets(np.array([0, 1, 2, 4, 5]), reward, 0.5, 2, is_last, terminated)
    np.testing.assert_allclose(ret, [1 + 1, 2 + 2, 4, 8 + 8, 16])
    assert nxt.tolist() == [2, 3, 3, 6, 6]
    np.testing.assert_allclose(disc, [0.25, 0, 0, 0.25, 0.5])


def test_nstep_rejects_bad_rows():
    is_first, is_last, terminated, _, reward = make_data(0, unfinished_tail=True)
    with pytest.raises(ValueError, match="last rows"):
        nstep_targets(np.flatnonzero(is_last)[:1], reward, 0.9, 3, is_last, terminated)
    with pytest.raises(ValueError, match="unfinished"):
        nstep_targets(np.array([len(reward) - 2]), reward, 0.9, 3, is_last, terminated)


@pytest.mark.parametrize("seed", SEEDS)
def test_valid_sample_rows_with_unfinished_tail(seed):
    _, is_last, terminated, _, reward = make_data(seed, unfinished_tail=True)
    n_rows = len(is_last)
    assert valid_sample_rows(is_last).tolist() == [r for r in range(n_rows) if not is_last[r]]
    rows = valid_sample_rows(is_last, n=3)
    ends = [naive_end(is_last, r) for r in range(n_rows)]
    expect = [r for r in range(n_rows) if not is_last[r] and (ends[r] < n_rows or r + 3 <= n_rows - 1)]
    assert rows.tolist() == expect
    nstep_targets(rows, reward, 0.99, 3, is_last, terminated)  # every such row has a complete target
