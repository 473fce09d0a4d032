"""The writer: :class:`WritableStore` (appends, commits, embeddings, repair, sealing) and :func:`create_store`.

Writes go data first, commit point last (the root attribute's ``rows``/``episodes``, one atomic
``zarr.json`` replace), and zarr's LocalStore replaces each file atomically, so a kill at any moment leaves
a store whose committed prefix is complete; with ``durability="safe"`` (``rise_data.store.durable``) every
commit is also fsynced after the files it commits, so an OS crash or power loss leaves one too. One writer
per store: hold ``rise_data.store.lock.store_lock``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs import Zstd
from zarr.codecs import BytesCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.chunk_key_encodings import ChunkKeyEncoding, DefaultChunkKeyEncoding
from zarr.core.metadata import ArrayV3Metadata
from zarr.storage import LocalStore

from rise_data import __version__
from rise_data.encode.spec import upgrade_record
from rise_data.store.checksums import compute_checksums
from rise_data.store.durable import local_backend
from rise_data.store.format import (
    ATTR,
    EPISODE_ARRAYS,
    FORMAT_NAME,
    FORMAT_VERSION,
    LOCK_DIR,
    STEP_SCALARS,
    Durability,
    StoreError,
    StoreLayout,
    now_iso,
)
from rise_data.store.store import Store, _record


class Rows:
    """Row-wise concatenation of arrays without copying them all: slices copy only the rows asked for."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.bounds = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def __getitem__(self, s: slice) -> np.ndarray:
        a, b = s.start or 0, len(self) if s.stop is None else min(s.stop, len(self))
        i = int(np.searchsorted(self.bounds, a, side="right")) - 1
        out = []
        while a < b:
            lo = a - self.bounds[i]
            take = min(b - a, len(self.parts[i]) - lo)
            out.append(self.parts[i][lo : lo + take])
            a += take
            i += 1
        return out[0] if len(out) == 1 else np.concatenate(out)


@dataclass
class Episode:
    """One finished (or cut) episode, as the collector hands it to the store.

    ``obs``/``frame`` have T+1 rows: an array, a list of row arrays, or ``Rows`` (the collector's buffer
    blocks, written without concatenating them first); ``action``/``reward`` have T entries (the store
    pads the last row).
    """

    obs: np.ndarray | list[np.ndarray] | Rows
    frame: np.ndarray | list[np.ndarray] | Rows | None
    action: np.ndarray
    reward: np.ndarray
    terminated: bool
    truncated: bool
    env_index: int = 0
    # T+1 rows per embeddings name (e.g. what an online actor computed): committed with the episode
    embeddings: dict[str, np.ndarray | Rows] = dataclasses.field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.action)


class WritableStore(Store):
    """A store directory (or, for encode, an object-store URL) opened for writing.

    Open with :func:`~rise_data.store.open_store` (``mode="a"``) or :func:`create_store`.
    """

    mode = "a"

    def write_meta(self, **changes: Any) -> None:
        """Update root attributes in one atomic ``zarr.json`` replace: with ``rows``/``episodes``, the commit."""
        self._meta = {**self._meta, **changes}
        self.group.attrs[ATTR] = self._meta

    # -- writing steps ----------------------------------------------------------------------
    def repair(self) -> dict:
        """Make array shapes equal the commit point again after a killed writer; returns what it did.

        A writer killed mid-append leaves arrays longer than the committed ``rows``/``episodes`` (readers
        ignore the tail, but a third-party reader trusting shapes would not), ``*.partial`` temp files, and
        possibly ``rows_done`` beyond ``rows``. This trims every array to the commit point, clamps
        ``rows_done`` and deletes the temp files; committed data is never touched. Call it holding the
        store's writer lock (``rise_data.store.lock.store_lock``): a tail is also what a live writer's
        uncommitted append looks like. ``rise-data collect`` runs it at start; ``rise-data repair`` runs it.
        """
        dropped = 0
        for _, arr in self.step_arrays():
            if arr.shape[0] > self.rows:
                dropped = max(dropped, arr.shape[0] - self.rows)
                arr.resize((self.rows, *arr.shape[1:]))
        episodes = 0
        for name in EPISODE_ARRAYS:
            arr = self.array(f"episodes/{name}")
            if arr.shape[0] > self.num_episodes:
                episodes = max(episodes, arr.shape[0] - self.num_episodes)
                arr.resize((self.num_episodes,))
        for name in self.embedding_names():
            arr = self.array(f"embeddings/{name}")
            if arr.shape[0] > self.rows:
                arr.resize((self.rows, arr.shape[1]))
            meta = _record(arr.attrs)
            if int(meta.get("rows_done", 0)) > self.rows:
                arr.attrs[ATTR] = {**meta, "rows_done": self.rows}
        temp = partial_files(self.path)
        _remove_partial_files(self.path)
        return {"rows_dropped": dropped, "episodes_dropped": episodes, "temp_files_removed": len(temp)}

    def append_episodes(self, episodes: list[Episode]) -> tuple[int, int]:
        """Append whole episodes and commit them; returns the (first, last+1) rows written.

        Episodes may carry rows of existing embeddings arrays (``Episode.embeddings``, every episode the
        same names): they are written before the commit, and ``rows_done`` moves over them right after it
        (when no gap is left before them), so a kill at any point leaves ``rows_done <= rows`` with every
        row below it encoded.
        """
        if not episodes:
            return self.rows, self.rows
        n0, e0 = self.rows, self.num_episodes
        cols = episode_columns(episodes, first_row=n0, first_episode=e0, with_frames=self.has_frames)
        n1 = n0 + len(cols["action"])
        carried = self._carried_embeddings(episodes)
        for name, arr in self.step_arrays():
            if arr.shape[0] != n1:
                arr.resize((n1, *arr.shape[1:]))
            write_rows(arr, n0, cols[name])
        e1 = e0 + len(episodes)
        for name in EPISODE_ARRAYS:
            arr = self.array(f"episodes/{name}")
            if arr.shape[0] != e1:
                arr.resize((e1,))
            arr[e0:e1] = cols[f"episodes/{name}"]
        # embeddings cover every row; new rows are not done unless the episodes carry them
        for name in self.embedding_names():
            arr = self.array(f"embeddings/{name}")
            arr.resize((n1, arr.shape[1]))
            if name in carried:
                write_rows(arr, n0, _rows([ep.embeddings[name] for ep in episodes]))
        self.write_meta(rows=n1, episodes=e1)  # the commit
        for name in carried:
            arr = self.array(f"embeddings/{name}")
            meta = _record(arr.attrs)
            if int(meta["rows_done"]) >= n0:
                arr.attrs[ATTR] = {**meta, "rows_done": n1}
        return n0, n1

    def _carried_embeddings(self, episodes: list[Episode]) -> set[str]:
        """The embeddings names the episodes carry rows for, checked against the store before any write."""
        names = set(episodes[0].embeddings)
        have = set(self.embedding_names())
        for ep in episodes:
            if set(ep.embeddings) != names:
                raise StoreError("episodes appended together must carry rows of the same embeddings")
            for name, rows in ep.embeddings.items():
                if name not in have:
                    raise StoreError(
                        f"{self.path} has no embeddings '{name}' to append rows to; create it first "
                        f"(rise-data encode {self.path} --encoder ENCODER --name {name})"
                    )
                dim = self.array(f"embeddings/{name}").shape[1]
                shape = (len(rows), *np.shape(rows[0:1])[1:])
                if shape != (ep.length + 1, dim):
                    raise StoreError(
                        f"embeddings '{name}' rows of shape {shape} do not fit an episode of "
                        f"{ep.length + 1} rows and dim {dim}"
                    )
        return names

    def log_write(self, command: str, config: Any, **extra: Any) -> None:
        """Record a command that wrote to the store (its frozen config, time, version)."""
        entry = {
            "command": command,
            "time": now_iso(),
            "rise_version": __version__,
            "config": config,
            **extra,
        }
        self.write_meta(history=[*self._meta.get("history", []), entry])

    # -- embeddings -------------------------------------------------------------------------
    def upgrade(self) -> None:
        """Bring a format 1 store to the current format: its embeddings records in the current layout, then
        ``format_version`` (docs/store-format.md "Versions"). Rows are untouched; hold the writer lock."""
        if self._meta["format_version"] == FORMAT_VERSION:
            return
        for name in self.embedding_names():
            arr = self.array(f"embeddings/{name}")
            arr.attrs[ATTR] = upgrade_record(_record(arr.attrs))
        self.write_meta(format_version=FORMAT_VERSION)

    def create_embedding(
        self, name: str, dim: int, dtype: str, provenance: dict, layout: StoreLayout
    ) -> zarr.Array:
        """A new (or replaced) embeddings array with the record ``provenance``; a format 1 store is upgraded
        first, so a store never mixes record layouts. Its chunk keys are the ``obs`` array's (a store
        created before flat keys keeps nested ones)."""
        self.upgrade()
        # embedding_chunk_bytes, not frame_chunk_bytes (which image_chunk_rows reads): the largest power of two
        row_bytes = dim * np.dtype(dtype).itemsize
        rows_per_chunk = 1 << max(0, (layout.embedding_chunk_bytes // row_bytes).bit_length() - 1)
        arr = self.group.create_array(
            f"embeddings/{name}",
            shape=(self.rows, dim),
            chunks=(rows_per_chunk, dim),
            dtype=dtype,
            compressors=ZstdCodec(level=layout.zstd_level),
            fill_value=0,
            dimension_names=("row", "feature"),
            chunk_key_encoding=self._chunk_keys(),
            overwrite=True,
        )
        arr.attrs[ATTR] = {**provenance, "rows_done": 0}
        return arr

    def _chunk_keys(self) -> ChunkKeyEncoding:
        meta = self.array("obs").metadata
        assert isinstance(meta, ArrayV3Metadata)  # rise creates format 3 arrays only
        return meta.chunk_key_encoding

    def delete_embedding(self, name: str) -> None:
        del self.group[f"embeddings/{name}"]

    def record_checksums(self, digests: dict, replace: bool = False) -> None:
        """Record per-array checksums (from :class:`RowHasher` or :func:`compute_checksums`) in the root attrs."""
        arrays = {} if replace else self.checksums
        arrays.update(digests)
        self.write_meta(checksums={"algorithm": "sha256", "time": now_iso(), "arrays": arrays})

    def seal(self, names: list[str] | None = None) -> dict:
        """Compute (streaming) and record the checksums of ``names`` (default: every array); returns them."""
        digests = compute_checksums(self, names)
        self.record_checksums(digests, replace=names is None)
        return digests


def _direct_chunk_codec(arr: zarr.Array) -> Zstd | None:
    """The zstd codec when ``arr``'s whole chunks can be written as files directly, else None.

    Only for the layout rise creates on a local disk: chunks that split the row axis alone, the default
    chunk keys (flat "." or nested "/"), and codecs ``bytes`` (little-endian or single-byte dtypes) +
    ``zstd``. Such a chunk file is exactly numcodecs' zstd of the chunk's C-order bytes, which is what zarr
    writes itself.
    """
    if not isinstance(arr.store, LocalStore) or sys.byteorder != "little":
        return None
    meta = arr.metadata
    if not isinstance(meta, ArrayV3Metadata):  # rise creates format 3 arrays only
        return None
    codecs = meta.codecs
    key = meta.chunk_key_encoding
    if not (
        len(codecs) == 2
        and isinstance(codecs[0], BytesCodec)
        and isinstance(codecs[1], ZstdCodec)
        and getattr(key, "name", "default") == "default"
        and getattr(key, "separator", "/") in ("/", ".")
        and tuple(arr.chunks[1:]) == tuple(arr.shape[1:])
    ):
        return None
    return Zstd(level=codecs[1].level, checksum=codecs[1].checksum)


def write_rows(arr: zarr.Array, start: int, data: np.ndarray | Rows) -> None:
    """``arr[start:start+len(data)] = data``, writing whole chunks as files directly when that is safe.

    zarr-python spends ~124 us per 100 kB Atari frame row on a write (copies and per-chunk Python/async
    overhead); compressing and writing whole chunks here costs ~24 us per row, 5.2x less, with identical
    bytes (``python benchmarks/store_write.py``, 2-core CPU). Partial chunks at either end, and any layout the fast path does not cover, go
    through zarr. Whole chunks go through the array's own store (``set_sync``: a temporary name renamed, and
    with ``durability="safe"`` fsynced at the next commit), like every file zarr writes.
    """
    stop = start + len(data)
    codec = _direct_chunk_codec(arr)
    c = arr.chunks[0]
    first_full = -(-start // c) * c
    last_full = stop // c * c
    if codec is None or last_full <= first_full:
        arr[start:stop] = data[0 : len(data)]
        return
    if first_full > start:
        arr[start:first_full] = data[: first_full - start]
    store = arr.store
    assert isinstance(store, LocalStore)  # _direct_chunk_codec returns a codec for LocalStore arrays only
    tail = (0,) * (arr.ndim - 1)
    prefix = f"{arr.path}/" if arr.path else ""  # an array at the store's root has path ""
    buffer = default_buffer_prototype().buffer
    for row in range(first_full, last_full, c):
        chunk = np.ascontiguousarray(data[row - start : row - start + c], dtype=arr.dtype)
        key = prefix + arr.metadata.encode_chunk_key((row // c, *tail))
        store.set_sync(key, buffer.from_bytes(codec.encode(chunk)))
    if stop > last_full:
        arr[last_full:stop] = data[last_full - start :]


def episode_columns(episodes: list[Episode], first_row: int, first_episode: int, with_frames: bool) -> dict:
    """Concatenate episodes into step-major columns with flags, padding and the episode index."""
    lengths = np.array([ep.length for ep in episodes], dtype=np.int64)
    rows = lengths + 1
    starts = first_row + np.concatenate([[0], np.cumsum(rows)[:-1]])
    n = int(rows.sum())
    pad = np.zeros(1)
    local_first = starts - first_row
    local_last = local_first + rows - 1
    flags = {name: np.zeros(n, bool) for name in ("is_first", "is_last", "terminated", "truncated")}
    flags["is_first"][local_first] = True
    flags["is_last"][local_last] = True
    flags["terminated"][local_last] = [ep.terminated for ep in episodes]
    flags["truncated"][local_last] = [ep.truncated for ep in episodes]
    cols: dict[str, np.ndarray | Rows] = {
        "obs": _rows([ep.obs for ep in episodes]),
        "action": np.concatenate([np.append(ep.action, pad).astype(np.int64) for ep in episodes]),
        "reward": np.concatenate([np.append(ep.reward, pad).astype(np.float32) for ep in episodes]),
        **flags,
        "episode_id": np.repeat(np.arange(first_episode, first_episode + len(episodes)), rows),
    }
    if with_frames:
        cols["frame"] = _rows([ep.frame for ep in episodes])
    for ep in episodes:
        if len(ep.obs) != ep.length + 1 or len(ep.reward) != ep.length:
            raise StoreError(
                f"episode has {len(ep.obs)} observations for {ep.length} actions (needs T+1 for T)"
            )
        if ep.terminated == ep.truncated:
            raise StoreError("an episode must end either terminated or truncated, not both or neither")
    cols["episodes/start"] = starts
    cols["episodes/length"] = lengths
    cols["episodes/return"] = np.array([float(np.sum(ep.reward, dtype=np.float64)) for ep in episodes])
    cols["episodes/env_index"] = np.array([ep.env_index for ep in episodes], dtype=np.int32)
    return cols


def _rows(parts: list) -> Rows:
    """Episodes' image rows (arrays, lists of rows, or ``Rows``) as one lazily concatenated source."""
    out: list[np.ndarray] = []
    for p in parts:
        if isinstance(p, Rows):
            out += p.parts
        else:
            out.append(p if isinstance(p, np.ndarray) else np.stack(p))
    return Rows(out)


def _remove_partial_files(path: str) -> None:
    """Delete the ``*.partial`` temp files an interrupted zarr LocalStore write can leave behind."""
    if "://" in str(path):
        return
    for p in Path(path).rglob("*.partial"):
        p.unlink(missing_ok=True)


def partial_files(path: str) -> list[Path]:
    if "://" in str(path) or not Path(path).is_dir():
        return []
    return sorted(Path(path).rglob("*.partial"))


# Flat chunk keys (frame/c.12.0.0.0): zarr's default "/" puts every chunk of an N-d array in N-1 new folders
# of its own; creating and fsyncing them cost 1.7x the CPU of a durable Atari frame row (52 vs 31 us,
# benchmarks/store_write.py). Stores created before keep "/" (each array's zarr.json records its keys).
CHUNK_KEYS = DefaultChunkKeyEncoding(separator=".")


def create_store(
    path: str | os.PathLike,
    env: dict,
    obs_shape: tuple[int, ...],
    frame_shape: tuple[int, ...] | None,
    layout: StoreLayout | None = None,
    durability: Durability = "safe",
) -> WritableStore:
    """Create an empty store for one env spec; ``frame_shape=None`` stores no RGB frames."""
    layout = layout or StoreLayout()
    path = str(path)
    if not is_empty_folder(path):
        raise StoreError(f"{path} exists and is not empty; choose a new path or append to a rise store there")
    backend = local_backend(path, durability)
    group = zarr.open_group(store=backend, mode="a", zarr_format=3)  # "w-" would refuse the lock in LOCK_DIR
    zstd = ZstdCodec(level=layout.zstd_level)

    def array(name: str, shape: tuple[int, ...], chunk_rows: int, dtype: str, dims: tuple[str, ...]) -> None:
        group.create_array(
            name,
            shape=(0, *shape),
            chunks=(chunk_rows, *shape),
            dtype=dtype,
            compressors=zstd,
            fill_value=0,
            dimension_names=dims,
            chunk_key_encoding=CHUNK_KEYS,
        )

    array("obs", tuple(obs_shape), layout.image_chunk_rows(obs_shape), "uint8", ("row", "y", "x"))
    if frame_shape is not None:
        rows = layout.image_chunk_rows(frame_shape)
        array("frame", tuple(frame_shape), rows, "uint8", ("row", "y", "x", "channel"))
    for name, dtype in STEP_SCALARS.items():
        array(name, (), layout.scalar_chunk_rows, dtype, ("row",))
    for name, dtype in EPISODE_ARRAYS.items():
        array(f"episodes/{name}", (), layout.episode_chunk_rows, dtype, ("episode",))
    group.require_group("embeddings")
    group.attrs[ATTR] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "rise_version": __version__,
        "created": now_iso(),
        "env": env,
        "layout": dataclasses.asdict(layout),
        "rows": 0,
        "episodes": 0,
        "history": [],
    }
    return WritableStore(group, path)


def is_empty_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` does not exist or is a folder holding nothing but rise's own ``LOCK_DIR``."""
    p = Path(path)
    if not p.exists():
        return True
    return p.is_dir() and all(c.name == LOCK_DIR for c in p.iterdir())
