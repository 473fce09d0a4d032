"""An array-based sum tree for prioritized replay, vectorised over batches of leaves.

The tree is one float64 array of ``2 * size`` nodes (``size`` = capacity rounded up to a power of two):
node 1 is the root, node ``i`` has children ``2i`` and ``2i + 1``, and the leaves are nodes
``size .. 2 * size - 1``. Internal nodes are always recomputed from their children (never incremented),
so rounding errors do not accumulate over millions of updates.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SumTree"]


class SumTree:
    """Non-negative leaf values with O(log N) batched ``update`` and prefix-sum ``find``."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.depth = max(0, (self.capacity - 1).bit_length())
        self.size = 1 << self.depth
        self.nodes = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self.nodes[1])

    @property
    def values(self) -> np.ndarray:
        """Read-only view of the ``capacity`` leaf values."""
        view = self.nodes[self.size : self.size + self.capacity]
        view.flags.writeable = False
        return view

    def __getitem__(self, idx) -> np.ndarray:
        return self.nodes[self.size + np.asarray(idx, dtype=np.int64)]

    def update(self, idx: np.ndarray, values: np.ndarray | float) -> None:
        """Set leaves ``idx`` to ``values`` (broadcast); with duplicate indices the last value wins."""
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if idx.size == 0:
            return
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), idx.shape)
        if idx.min() < 0 or idx.max() >= self.capacity:
            raise IndexError(f"leaf index out of range [0, {self.capacity})")
        if not np.all(values >= 0):  # also rejects NaN
            raise ValueError("sum tree values must be finite and >= 0")
        node = idx + self.size
        self.nodes[node] = values
        for _ in range(self.depth):
            # duplicate parents just recompute the same sum; cheaper than np.unique on small batches
            node = node >> 1
            self.nodes[node] = self.nodes[2 * node] + self.nodes[2 * node + 1]

    def set_all(self, values: np.ndarray) -> None:
        """Replace every leaf at once (``capacity`` values) and rebuild the tree level by level."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.capacity,):
            raise ValueError(f"expected {self.capacity} values, got shape {values.shape}")
        if not np.all(values >= 0):
            raise ValueError("sum tree values must be finite and >= 0")
        self.nodes[:] = 0.0
        self.nodes[self.size : self.size + self.capacity] = values
        for level in range(self.depth - 1, -1, -1):
            lo, hi = 1 << level, 2 << level
            self.nodes[lo:hi] = self.nodes[2 * lo : 2 * hi : 2] + self.nodes[2 * lo + 1 : 2 * hi : 2]

    def find(self, prefix: np.ndarray) -> np.ndarray:
        """int64 leaves ``i`` with ``sum(values[:i]) <= prefix < sum(values[:i+1])``, one per prefix sum.

        A prefix at or beyond ``total`` (rounding) gives the last non-zero leaf; a zero leaf is never
        returned while ``total > 0``, because the descent only turns right into a non-empty subtree.
        """
        if self.nodes[1] <= 0:
            raise ValueError("cannot sample from a sum tree whose total is 0")
        p = np.asarray(prefix, dtype=np.float64).copy()
        node = np.ones(p.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * node
            lv = self.nodes[left]
            right = (p >= lv) & (self.nodes[left + 1] > 0)
            p -= np.where(right, lv, 0.0)
            node = left + right
        return node - self.size

    def stratified(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` leaves drawn proportionally to value: one uniform draw in each of n equal slices of [0, total)."""
        total = self.total
        return self.find((np.arange(n) + rng.random(n)) * (total / n))
