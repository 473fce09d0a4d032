"""The replay's configuration and the batch it hands the learner."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from rise_data.options import ConfigError, param

if TYPE_CHECKING:
    from rise_agent.network import NetworkConfig

__all__ = ["Batch", "ReplayConfig", "WindowedConfig"]


@dataclass(frozen=True)
class ReplayConfig:
    """Replay size, n-step return, prioritisation and the batch mix (defaults: BTR).

    The windows (frame stack S, context length K) are not here: the network owns them
    (``NetworkConfig.frame_stack`` / ``.context_len``) and :class:`~rise_agent.replay.Replay` takes them
    as arguments.

    ``offline_fraction``: exact share of every batch drawn from the store (``round(f * B)`` rows, from
    the first sample on); None = implied by the sources present (see :mod:`rise_agent.replay.mixer`).
    ``ring_dir``: folder holding the online ring's rows as memory-mapped files, so a checkpoint records
    only where the ring ends; None keeps the ring in RAM.
    """

    capacity: int = param(2**20, "online rows (ring), split evenly into one contiguous segment per env")
    n_step: int = param(3, "n-step return length (BTR: 3)")
    gamma: float = param(0.997, "discount (BTR: 0.997)")
    prioritized: bool = param(True, "PER (sum tree) or uniform")
    per_alpha: float = param(0.2, "PER priority exponent (BTR: 0.2)")
    per_beta: float = param(
        0.0, "IS exponent (BTR's final code effectively uses none); weights = (N*P)^-beta / max"
    )
    per_eps: float = param(1e-6, "added to |TD| before the exponent")
    reward_clip: float | None = param(1.0, "BTR clips rewards to [-1, 1]; stores keep raw rewards")
    offline_fraction: float | None = param(
        None, "batch share from the store (default: 1, 0 or 0.5 with both)"
    )
    ring_dir: str | None = param(None, "Folder of the online ring's memory-mapped rows (None: in RAM).")
    # the next batch's rows are drawn before this step's priorities come back (one step stale)
    prefetch: bool = param(False, "gather the next batch in a background thread while the learner steps")
    pinned: bool = param(
        True, "CUDA: batch uploads from pinned host buffers, non_blocking (False: plain .to)"
    )
    # batches gathered there, no upload; ring files get the frames at checkpoints; 2^20 rows of 84x84
    # take 7.4 GB of device memory
    obs_on_device: bool = param(False, "keep the online ring's frames on the replay's device (a GPU)")

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.n_step < 1:
            raise ConfigError(f"capacity and n_step must be >= 1, got {self.capacity} and {self.n_step}")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.per_alpha < 0 or self.per_beta < 0 or self.per_eps <= 0:
            raise ConfigError("per_alpha and per_beta must be >= 0 and per_eps > 0")
        if self.reward_clip is not None and self.reward_clip <= 0:
            raise ConfigError(f"reward_clip must be > 0 or None, got {self.reward_clip}")
        if self.offline_fraction is not None and not 0.0 <= self.offline_fraction <= 1.0:
            raise ConfigError(f"offline_fraction must be in [0, 1] or None, got {self.offline_fraction}")


@dataclass(frozen=True)
class WindowedConfig(ReplayConfig):
    """Internal: a :class:`ReplayConfig` plus the network's windows, what the replay's parts read."""

    frame_stack: int = param(kw_only=True, help="S")
    context_len: int = param(kw_only=True, help="K; 0 = no context (plain BTR)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frame_stack < 1 or self.context_len < 0:
            raise ValueError(
                f"frame_stack must be >= 1 and context_len >= 0, got {self.frame_stack} and {self.context_len}"
            )

    @classmethod
    def of(cls, config: ReplayConfig, network: NetworkConfig) -> WindowedConfig:
        """``config`` with the windows of ``network``, which owns them (read here, never passed apart)."""
        own = {f.name: getattr(config, f.name) for f in fields(ReplayConfig)}
        return cls(**own, frame_stack=int(network.frame_stack), context_len=int(network.context_len))

    @property
    def lookback(self) -> int:
        """Rows a transition's windows span back from its row, itself included: max(K, S)."""
        return max(self.frame_stack, self.context_len)


@dataclass
class Batch:
    """A sampled batch; every tensor is on the replay's device.

    ``frames`` uint8 (B, S, H, W), the episode's first frame repeated in slots before its start (BTR). ``context`` float16
    (B, K, D): embeddings of rows t-K+1..t, current frame last, zero where ``mask`` (bool (B, K)) is
    False; both None when K = 0. ``returns``: n-step sum of clipped rewards; ``discount``: gamma^m, or 0
    when the episode terminated at t+m. ``next_*``: the same at row t+m. ``weights``: PER importance
    weights (ones when uniform). ``index``: global replay rows, for ``Replay.update_priorities``
    (the store's rows first, the online ring's after them).
    """

    frames: Tensor
    context: Tensor | None
    mask: Tensor | None
    action: Tensor
    returns: Tensor
    discount: Tensor
    next_frames: Tensor
    next_context: Tensor | None
    next_mask: Tensor | None
    weights: Tensor
    index: np.ndarray
