"""Samplers: which rows of one source a batch draws, and with what probability.

A sampler owns one sum tree with a leaf per row of its source. The source says which rows are
sampleable (:meth:`Sampler.mark`); the sampler decides their weights: 1 for :class:`UniformSampler`,
``(|td| + eps) ** alpha`` for :class:`PrioritizedSampler` (new rows enter at the running max priority,
BTR's PER). Unsampleable rows are 0, so a zero leaf is never drawn. Draws are stratified: one uniform
draw in each of ``n`` equal slices of the tree's total, which for uniform sampling with ``n`` equal to
the row count takes every sampleable row exactly once.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from rise_agent.replay.sumtree import SumTree

__all__ = ["PrioritizedSampler", "Sampler", "UniformSampler", "make_sampler"]


class Sampler(Protocol):
    """What a source's sampler does; the replay talks to samplers only through this."""

    def mark(self, off: np.ndarray, on: np.ndarray) -> None:
        """Rows ``off`` stop being sampleable, rows ``on`` start (at the new-row weight)."""

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows and, for each, the probability that one draw picks it."""

    def update(self, rows: np.ndarray, td: np.ndarray) -> None:
        """New TD errors for sampleable ``rows`` (no-op when uniform)."""

    def weights(self) -> np.ndarray:
        """The leaf weights, one per row (0 = not sampleable)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, sd: dict) -> None: ...


class _TreeSampler:
    """Leaf weights in a sum tree; subclasses choose the weight of new rows and of updates."""

    def __init__(self, capacity: int):
        self.tree = SumTree(capacity)

    def _new_value(self) -> float:
        return 1.0

    def mark(self, off: np.ndarray, on: np.ndarray) -> None:
        # off first, then on: a row in both ends up sampleable (the tree's last-value-wins rule)
        values = np.concatenate([np.zeros(off.size), np.full(on.size, self._new_value())])
        self.tree.update(np.concatenate([off, on]), values)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        rows = self.tree.stratified(n, rng)
        return rows, self.tree[rows] / self.tree.total

    def update(self, rows: np.ndarray, td: np.ndarray) -> None:
        pass

    def weights(self) -> np.ndarray:
        return self.tree.values

    def state_dict(self) -> dict:
        return {"weights": torch.from_numpy(self.tree.values.copy())}

    def load_state_dict(self, sd: dict) -> None:
        self.tree.set_all(sd["weights"].numpy())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class UniformSampler(_TreeSampler):
    """Every sampleable row equally likely (a sum tree of 0/1 leaves, so rows come and go in O(log N))."""


class PrioritizedSampler(_TreeSampler):
    """Proportional PER: row weight ``(|td| + eps) ** alpha``; new rows get the largest weight seen so far."""

    def __init__(self, capacity: int, alpha: float, eps: float):
        super().__init__(capacity)
        self.alpha, self.eps = float(alpha), float(eps)
        self.max_priority = 1.0

    def _new_value(self) -> float:
        return self.max_priority

    def update(self, rows: np.ndarray, td: np.ndarray) -> None:
        prio = priorities(td, self.alpha, self.eps)
        if prio.size:
            self.max_priority = max(self.max_priority, float(prio.max()))
        self.tree.update(rows, prio)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "max_priority": torch.tensor(self.max_priority, dtype=torch.float64)}

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.max_priority = float(sd["max_priority"])

    def __repr__(self) -> str:
        return f"PrioritizedSampler(alpha={self.alpha}, eps={self.eps})"


def priorities(td: np.ndarray, alpha: float, eps: float) -> np.ndarray:
    """PER priorities ``(|td| + eps) ** alpha`` (float64)."""
    return (np.abs(np.asarray(td, np.float64)) + eps) ** alpha


def make_sampler(config, capacity: int) -> UniformSampler | PrioritizedSampler:
    """The sampler ``config`` asks for (``prioritized``, ``per_alpha``, ``per_eps``) over ``capacity`` rows."""
    if config.prioritized:
        return PrioritizedSampler(capacity, config.per_alpha, config.per_eps)
    return UniformSampler(capacity)
