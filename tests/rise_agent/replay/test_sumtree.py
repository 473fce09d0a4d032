"""SumTree against a naive cumulative-sum search."""

from __future__ import annotations

import numpy as np
import pytest

from rise_agent.replay.sumtree import SumTree


def naive_find(values: np.ndarray, prefix: np.ndarray) -> np.ndarray:
    # leaf i covers [cumsum[i-1], cumsum[i]); zero-width leaves cover nothing
    return np.searchsorted(np.cumsum(values), prefix, side="right")


@pytest.mark.parametrize("seed", range(20))
def test_find_matches_cumsum_search(seed):
    rng = np.random.default_rng(seed)
    cap = int(rng.choice([1, 2, 3, 7, 64, 100, 257, 1000]))
    # small integers: every partial sum is exact in float64, so the comparison has no rounding ties
    values = rng.integers(0, 6, cap).astype(np.float64)
    values[rng.integers(cap)] = 1.0  # total > 0
    tree = SumTree(cap)
    tree.set_all(values)
    assert tree.total == values.sum()
    cs = np.cumsum(values)
    prefix = np.concatenate([rng.random(500) * values.sum(), [0.0], cs[:-1][cs[:-1] < cs[-1]]])
    np.testing.assert_array_equal(tree.find(prefix), naive_find(values, prefix))
    assert np.all(values[tree.find(prefix)] > 0)

    # batched updates (with repeated indices) keep leaves, internal sums and searches consistent
    for _ in range(10):
        idx = rng.integers(0, cap, rng.integers(1, 2 * cap + 1))
        new = rng.integers(0, 6, idx.size).astype(np.float64)
        tree.update(idx, new)
        for i, v in zip(idx, new, strict=True):  # numpy assignment: the last duplicate wins
            values[i] = v
        np.testing.assert_array_equal(tree.values, values)
        np.testing.assert_array_equal(tree[np.arange(cap)], values)
        assert tree.total == values.sum()
        if values.sum() == 0:
            with pytest.raises(ValueError, match="total is 0"):
                tree.find(np.zeros(1))
            continue
        prefix = rng.random(300) * values.sum()
        np.testing.assert_array_equal(tree.find(prefix), naive_find(values, prefix))

    # every internal node is the sum of its children
    n = tree.nodes
    np.testing.assert_array_equal(n[1 : tree.size], n[2 : 2 * tree.size : 2] + n[3 : 2 * tree.size : 2])


def test_update_scalar_broadcast_and_set_all_agree():
    rng = np.random.default_rng(0)
    values = rng.random(300)
    a, b = SumTree(300), SumTree(300)
    a.set_all(values)
    b.update(np.arange(300), values)
    np.testing.assert_allclose(a.nodes, b.nodes)
    a.update(np.array([3, 5, 7]), 0.0)
    assert a[np.array([3, 5, 7])].tolist() == [0.0, 0.0, 0.0]
    assert a.total == pytest.approx(values.sum() - values[[3, 5, 7]].sum())


def test_never_returns_zero_leaves_even_past_total():
    tree = SumTree(10)
    tree.update(np.array([2, 6]), np.array([0.5, 0.25]))
    got = tree.find(np.array([0.0, 0.49, 0.5, 0.74, 0.75, 1.0, 1e9]))
    assert got.tolist() == [2, 2, 6, 6, 6, 6, 6]


def test_stratified_one_draw_per_slice():
    rng = np.random.default_rng(1)
    tree = SumTree(50)
    tree.set_all(np.ones(50))
    # equal values: slice i of [0, 50) is exactly leaf i
    assert tree.stratified(50, rng).tolist() == list(range(50))
    tree.update(np.arange(0, 50, 2), 0.0)
    assert tree.stratified(25, rng).tolist() == list(range(1, 50, 2))


def test_rejects_bad_input():
    tree = SumTree(4)
    with pytest.raises(ValueError):
        tree.update(np.array([0]), -1.0)
    with pytest.raises(ValueError):
        tree.update(np.array([0]), np.nan)
    with pytest.raises(IndexError):
        tree.update(np.array([4]), 1.0)
    with pytest.raises(ValueError):
        SumTree(0)
    with pytest.raises(ValueError, match="total is 0"):
        tree.find(np.array([0.0]))
