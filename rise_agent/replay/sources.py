"""Replay sources: the rows a batch is gathered from, each with its own length, n-step targets and windows.

A source holds rows (frames, embeddings, actions, rewards, episode flags), says which rows are
sampleable (``ok``) and turns sampled rows into n-step targets and frame-stack / context windows with
:mod:`rise_data.windows`. Its sampler (:mod:`rise_agent.replay.samplers`) is told whenever a row starts
or stops being sampleable. :class:`StoreSource` is a store's transitions, read-only; the online ring is
:class:`rise_agent.replay.ring.OnlineRing`.

The store's frames are never gathered from Zarr (random reads decompress whole chunks): its ``obs``
array is copied once into an uncompressed ``.npy`` memmap under ``cache_dir`` (:func:`obs_cache`).
Scalars live in RAM, embeddings on the device, with one extra zero row that masked window slots gather.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rise_agent.replay.config import WindowedConfig
from rise_agent.replay.samplers import Sampler, make_sampler
from rise_data.errors import UserError
from rise_data.memmap_cache import array_cache, array_cache_path
from rise_data.windows import episode_ends, episode_starts, nstep_targets, window_offsets

__all__ = ["Source", "StoreSource", "clip_reward", "obs_cache", "obs_cache_path"]

_READ_BYTES = 64 << 20  # bytes per streamed read of the store (rounded to whole chunks)


def clip_reward(reward: np.ndarray, clip: float | None) -> np.ndarray:
    return reward if clip is None else np.clip(reward, -clip, clip)


class Source:
    """Rows covered by one sampler. ``base`` is the global index of local row 0 (``Batch.index``)."""

    name: str
    base: int = 0
    num_rows: int
    sampler: Sampler
    ok: np.ndarray  # bool per row: sampleable now
    obs: np.ndarray | Tensor  # frames; a device tensor when the ring keeps them there (obs_on_device)
    emb: Tensor | None  # (num_rows + 1, D): the extra last row is zeros, what masked slots gather
    action: np.ndarray

    @property
    def count(self) -> int:
        """Sampleable transitions."""
        return int(np.count_nonzero(self.ok))

    def reprioritize(self, rows: np.ndarray, td: np.ndarray) -> None:
        """New TD errors for sampled local ``rows``; rows no longer sampleable (overwritten) are skipped."""
        live = self.ok[rows]
        if live.any():
            self.sampler.update(rows[live], td[live])

    def targets(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(n-step return, bootstrap row, discount)`` of transitions starting at local rows ``idx``."""
        raise NotImplementedError

    def window(self, rows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The window (frame stack or context, :func:`rise_data.windows.window_offsets`) of ``length``
        ending at local ``rows``: (rows int64[B, length], valid bool[B, length]), in this source."""
        raise NotImplementedError


class StoreSource(Source):
    """A store's transitions: static, every row but an episode's last one sampleable."""

    name = "store"

    def __init__(
        self, config: WindowedConfig, obs: np.ndarray, emb: Tensor | None, cols: dict[str, np.ndarray]
    ):
        self.config = config
        self.obs, self.emb = obs, emb
        self.num_rows = int(cols["action"].shape[0])
        self.action = cols["action"].astype(np.int64)
        self.reward = clip_reward(cols["reward"].astype(np.float32), config.reward_clip)  # clipped copy
        self.is_last = cols["is_last"].astype(bool)
        self.terminated = cols["terminated"].astype(bool)
        self.starts = episode_starts(cols["is_first"])
        self.ends = episode_ends(self.is_last)
        self.ok = ~self.is_last
        self._count = int(np.count_nonzero(self.ok))
        self.sampler = make_sampler(config, self.num_rows)
        self.sampler.mark(np.zeros(0, np.int64), np.flatnonzero(self.ok))

    @classmethod
    def open(
        cls,
        store,
        embedding: str | None,
        config: WindowedConfig,
        device: torch.device,
        cache_dir: str | os.PathLike | None = None,
    ) -> StoreSource:
        """The transitions of an open ``store``; ``embedding`` names the embeddings the context reads."""
        if store.rows == 0:
            raise UserError(f"{store.path} holds no rows; collect some first")
        emb = None
        if config.context_len:
            if embedding is None:
                have = ", ".join(store.embedding_names()) or "none; run rise-data encode"
                raise UserError(
                    f"context_len={config.context_len} needs embeddings: pass one of {store.path}'s ({have})"
                )
            emb = load_embeddings(store, embedding, device)
        cols = {k: store.read(k) for k in ("action", "reward", "is_first", "is_last", "terminated")}
        return cls(config, obs_cache(store, cache_dir), emb, cols)

    @property
    def count(self) -> int:
        return self._count

    def targets(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.config
        return nstep_targets(idx, self.reward, c.gamma, c.n_step, self.is_last, self.terminated, self.ends)

    def window(self, rows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        offsets, valid = window_offsets(rows - self.starts[rows], length)
        return rows[:, None] + offsets, valid


def obs_cache_path(store, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the uncompressed ``obs`` cache of ``store`` lives (:func:`rise_data.memmap_cache.array_cache_path`)."""
    return array_cache_path(store, "obs", cache_dir)


def obs_cache(store, cache_dir: str | os.PathLike | None = None) -> np.memmap:
    """The store's committed ``obs`` rows as a read-only memmap, built once (:func:`rise_data.memmap_cache.array_cache`)."""
    return array_cache(store, "obs", cache_dir)


def load_embeddings(store, name: str, device: torch.device) -> Tensor:
    """The fully encoded embeddings ``name`` of ``store`` as float16 on ``device``, plus one zero row."""
    arr = store.require_embedding(name)  # refuses incomplete embeddings, naming the encode that finishes them
    rows, dim = store.rows, int(arr.shape[1])
    out = torch.empty((rows + 1, dim), dtype=torch.float16, device=device)
    out[rows] = 0  # the zero row masked window slots point at
    chunk = arr.chunks[0]
    step = chunk * max(1, _READ_BYTES // max(1, chunk * dim * arr.dtype.itemsize))
    for s in range(0, rows, step):
        e = min(rows, s + step)
        out[s:e] = torch.from_numpy(np.asarray(arr[s:e]).astype(np.float16, copy=False)).to(device)
    return out
