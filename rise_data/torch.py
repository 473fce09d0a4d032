"""A map-style PyTorch ``Dataset`` over a rise store: the transitions rise's replay samples, with its windows.

Item ``i`` is the ``i``-th transition of the store: every row but an episode's last one (its action and
reward are padding), as the replay samples them (:func:`rise_data.windows.valid_sample_rows`). The frame
stack, the context window and the n-step targets come from :mod:`rise_data.windows`, the functions the
replay gathers with; slots before an episode's start are filled as the replay fills them (the frame
stack repeats the episode's first frame, the context holds zeros; the ``*_mask`` keys say which slots
are real).

Workers: the dataset pickles its path, options and the small per-row columns, never a zarr handle;
each ``DataLoader`` worker opens its own store on first use. Reads go through a per-process LRU of
decoded chunks (``chunk_cache_mb``); with ``cache=True``, through arrays read into RAM once (small
stores); with ``cache_dir``, through uncompressed ``.npy`` copies built once under that folder and
memory-mapped by every worker (:mod:`rise_data.memmap_cache`, the replay's obs cache: large stores
read at random, on a local disk with room for ``rows x row bytes``). Directories, packed ``.zip`` files and ``s3://`` URLs all work (:func:`rise_data.store.open_store`).

A batch of indices is gathered in one vectorised pass (``__getitems__``, which ``DataLoader`` calls
with a batch sampler), so batches cost about what single items do per call.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from rise_data.memmap_cache import array_cache
from rise_data.options import ConfigError
from rise_data.store import Store, StoreError, open_store
from rise_data.windows import (
    context_window,
    episode_ends,
    episode_starts,
    frame_stack_indices,
    nstep_targets,
    valid_sample_rows,
)

__all__ = ["KEYS", "StoreDataset"]

SCALAR_KEYS = ("action", "reward", "terminated", "truncated", "is_first", "is_last")
# keys read at an observation row: with n-step targets they are also given at the bootstrap row (next_*)
OBS_KEYS = ("obs", "frame", "obs_stack", "obs_stack_mask", "embedding", "context", "context_mask")
KEYS = SCALAR_KEYS + OBS_KEYS


class _ChunkReader:
    """Rows of one store array through an LRU of whole decoded chunks (a random read decodes a chunk anyway)."""

    def __init__(self, store: Store, name: str, budget_bytes: int):
        self.store, self.name = store, name
        arr = store.array(name)
        self.chunk = int(arr.chunks[0])
        self.row_shape, self.dtype = tuple(arr.shape[1:]), arr.dtype
        chunk_bytes = self.chunk * int(np.prod(self.row_shape, dtype=np.int64)) * arr.dtype.itemsize
        self.capacity = max(1, budget_bytes // max(1, chunk_bytes))
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def _get(self, c: int) -> np.ndarray:
        data = self.cache.pop(c, None)
        if data is None:
            data = self.store.read(self.name, c * self.chunk, (c + 1) * self.chunk)
            while len(self.cache) >= self.capacity:
                self.cache.popitem(last=False)
        self.cache[c] = data
        return data

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        which = rows // self.chunk
        order = np.argsort(which, kind="stable")  # rows grouped by chunk: one pass, no mask per chunk
        chunks, first = np.unique(which[order], return_index=True)
        for c, a, b in zip(chunks, first, [*first[1:], len(rows)], strict=True):
            sel = order[a:b]
            out[sel] = self._get(int(c))[rows[sel] - c * self.chunk]
        return out


class StoreDataset(Dataset):
    """Transitions of a rise store as dicts of tensors (see the module docstring and docs/viewer.md).

    ``keys`` (any of :data:`KEYS`): ``obs`` (H, W) uint8 gray view; ``frame`` (H, W, 3) uint8 RGB;
    ``obs_stack`` (S, H, W) the agent's frame stack (the episode's first frame repeated before its start,
    BTR's padding) and ``obs_stack_mask`` (S,) its real slots;
    ``action``, ``reward``, ``terminated``, ``truncated``, ``is_first``, ``is_last``; ``embedding`` (D,)
    of the array ``embedding``; ``context`` (K, D), the last K embeddings ending at the row, with
    ``context_mask`` (K,), False on slots before the episode start (zeros there, as in the replay).
    Every item also has ``row`` (the store row). ``n_step`` adds ``return``, ``discount`` and
    ``next_row`` (the bootstrap row, :func:`rise_data.windows.nstep_targets`) and ``next_<key>`` for
    each observation key.
    """

    def __init__(
        self,
        store: str,
        keys: tuple[str, ...] | list[str] = ("obs_stack", "action"),
        *,
        frame_stack: int = 4,
        context_len: int = 0,
        embedding: str | None = None,
        n_step: int | None = None,
        gamma: float = 0.997,
        cache: bool = False,
        chunk_cache_mb: int = 256,
        cache_dir: str | os.PathLike | None = None,
        storage_options: dict | None = None,
    ):
        self.path, self.keys = str(store), tuple(keys)
        unknown = [k for k in self.keys if k not in KEYS]
        if unknown or not self.keys:
            raise ConfigError(
                f"unknown dataset keys {unknown or '(none given)'}; choose from {', '.join(KEYS)}"
            )
        if {"context", "context_mask"} & set(self.keys) and context_len < 1:
            raise ConfigError("the context keys need context_len >= 1 (the window length K)")
        self.frame_stack, self.context_len, self.n_step, self.gamma = frame_stack, context_len, n_step, gamma
        self.storage_options, self.chunk_budget = storage_options, int(chunk_cache_mb) << 20
        s = open_store(self.path, storage_options=storage_options)
        self._store: Store | None = s
        if s.rows == 0:
            raise StoreError(f"{self.path} holds no rows; collect some first")
        self.embedding = self._embedding_name(s, embedding)
        need = {"is_first", "is_last"} | (set(self.keys) & set(SCALAR_KEYS))
        need |= {"reward", "terminated"} if n_step else set()
        self.cols = {k: s.read(k) for k in sorted(need)}
        self.starts = episode_starts(self.cols["is_first"])
        self.ends = episode_ends(self.cols["is_last"])
        self.rows = valid_sample_rows(self.cols["is_last"])
        self._readers: dict[str, _ChunkReader] = {}
        if cache and cache_dir is not None:
            raise ConfigError("pass cache=True (arrays in RAM) or cache_dir (memmapped copies), not both")
        self.ram = {name: s.read(name) for name in self.arrays()} if cache else {}
        self.memmap_paths: dict[str, str] = {}  # built here, once, before any worker starts
        for name in self.arrays() if cache_dir is not None else []:
            self.memmap_paths[name] = str(array_cache(s, name, cache_dir).filename)
        self._memmaps: dict[str, np.ndarray] = {}  # opened by path in each process

    def _embedding_name(self, s: Store, name: str | None) -> str | None:
        if not {"embedding", "context", "context_mask"} & set(self.keys):
            return None
        names = s.embedding_names()
        if name is None and len(names) != 1:
            raise StoreError(f"{self.path} has embeddings {names or 'none'}: pass embedding=NAME")
        name = name or names[0]
        s.require_embedding(name)  # complete, or one line naming the encode that finishes it
        return name

    def arrays(self) -> list[str]:
        """The store arrays the items read rows of (besides the per-row columns held in RAM)."""
        out = []
        if {"obs", "obs_stack"} & set(self.keys):
            out.append("obs")
        if "frame" in self.keys:
            out.append("frame")
        if {"embedding", "context"} & set(self.keys):
            out.append(f"embeddings/{self.embedding}")
        return out

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        # workers get the path and the small columns; each opens its own store (no zarr state pickled)
        return {**self.__dict__, "_store": None, "_readers": {}, "_memmaps": {}}

    def _take(self, name: str, rows: np.ndarray) -> np.ndarray:
        flat = rows.reshape(-1)
        if name in self.ram:
            data = self.ram[name][flat]
        elif name in self.memmap_paths:
            mm = self._memmaps.get(name)
            if mm is None:
                mm = self._memmaps[name] = np.load(self.memmap_paths[name], mmap_mode="r")
            data = mm[flat]
        else:
            if self._store is None:
                self._store = open_store(self.path, storage_options=self.storage_options)
            reader = self._readers.get(name)
            if reader is None:
                reader = self._readers[name] = _ChunkReader(self._store, name, self.chunk_budget)
            data = reader.take(flat)
        return data.reshape(*rows.shape, *data.shape[1:])

    def _key(self, key: str, rows: np.ndarray) -> np.ndarray:
        if key in SCALAR_KEYS:
            return self.cols[key][rows]
        if key in ("obs", "frame"):
            return self._take(key, rows)
        if key == "embedding":
            return self._take(f"embeddings/{self.embedding}", rows)
        if key.startswith("obs_stack"):
            srows, valid = frame_stack_indices(rows, self.starts, self.frame_stack)
            if key == "obs_stack_mask":
                return valid
            return self._take("obs", srows)  # slots before the start hold its first frame, as the replay's
        crows, mask = context_window(rows, self.starts, self.context_len)
        if key == "context_mask":
            return mask
        x = self._take(f"embeddings/{self.embedding}", crows)
        x[~mask] = 0  # the replay's masked slots gather a zero row
        return x

    def batch(self, index) -> dict[str, np.ndarray]:
        """Items ``index`` (an int array) as one dict of numpy arrays with a leading batch axis."""
        rows = self.rows[np.asarray(index, dtype=np.int64)]
        out: dict[str, np.ndarray] = {"row": rows}
        at = {"": rows}
        if self.n_step:
            c = self.cols
            ret, nxt, disc = nstep_targets(
                rows, c["reward"], self.gamma, self.n_step, c["is_last"], c["terminated"], self.ends
            )
            out.update({"return": ret, "discount": disc, "next_row": nxt})
            at["next_"] = nxt
        for prefix, r in at.items():
            for key in self.keys:
                if not prefix or key in OBS_KEYS:
                    out[prefix + key] = self._key(key, r)
        return out

    def __getitem__(self, i: int | list[int]) -> dict[str, torch.Tensor]:
        """Item ``i``, or with a list of indices the whole batch (a ``BatchSampler`` with ``batch_size=None``:
        one gather, no split into items and no re-stacking by ``collate``)."""
        if not isinstance(i, (int, np.integer)):
            idx = np.asarray(i, dtype=np.int64)
            if idx.size and not (-len(self) <= idx.min() and idx.max() < len(self)):
                raise IndexError(f"items {idx.min()}..{idx.max()} out of range for {len(self)} transitions")
            return {
                k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in self.batch(idx % len(self)).items()
            }
        if not -len(self) <= int(i) < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} transitions")
        return {k: torch.as_tensor(np.asarray(v[0])) for k, v in self.batch([int(i) % len(self)]).items()}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """What ``DataLoader`` calls for a batch: one vectorised gather, split into items for ``collate``."""
        b = {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in self.batch(indices).items()}
        return [{k: v[j] for k, v in b.items()} for j in range(len(indices))]
