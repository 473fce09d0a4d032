"""The rise store: a Zarr v3 group of step-major arrays, an episode index and embeddings.

The spec is docs/store-format.md. In short: one row per step, episodes contiguous, an episode of
T actions has T+1 rows (the last holds the final observation). The root attribute ``rise`` holds the
format version, the env spec and the **commit point** (``rows``, ``episodes``): arrays may be longer
than the commit point after an interrupted write, and every reader uses only the committed prefix.
Writes go data first, commit point last, and zarr's LocalStore replaces each file atomically, so a
kill at any moment leaves a store whose committed prefix is complete.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs import Zstd
from zarr.codecs import BytesCodec, ZstdCodec

from rise_data import __version__

FORMAT_NAME = "rise-store"
FORMAT_VERSION = 1
ATTR = "rise"  # every rise attribute lives under this one key, so other tools' attributes never collide
LOCK_DIR = ".rise"  # local state of a store folder (writer locks), not part of the Zarr hierarchy

# name -> dtype of the scalar per-step arrays (one value per row)
STEP_SCALARS: dict[str, str] = {
    "action": "int64",
    "reward": "float32",
    "terminated": "bool",
    "truncated": "bool",
    "is_first": "bool",
    "is_last": "bool",
    "episode_id": "int64",
}
EPISODE_ARRAYS: dict[str, str] = {
    "start": "int64",
    "length": "int64",
    "return": "float64",
    "env_index": "int32",
}


class StoreError(ValueError):
    """A store cannot be opened or written as asked; the message says what to do."""


class CorruptStoreError(StoreError):
    """The data on disk is damaged (a chunk that does not decode, a truncated ``zarr.json``): exit code 1."""


RESTORE_HINT = "run: rise-data check {path}, then restore the store from its pack or a copy"


class CheckedArray(zarr.Array):
    """A zarr array whose reads name the array and chunk that fails to decode, in one line.

    zarr reports a damaged chunk as e.g. ``RuntimeError: Zstd decompression error`` naming no array;
    every reader of a :class:`Store` gets its arrays through :meth:`Store.array`, so wrapping here once
    gives all of them (encode, train, export, ...) the same error.
    """

    store_path: str = "?"

    @classmethod
    def wrap(cls, arr: zarr.Array, store_path: str) -> CheckedArray:
        out = cls(arr._async_array)
        out.store_path = store_path
        return out

    def __getitem__(self, selection: Any) -> Any:
        try:
            return super().__getitem__(selection)
        except (IndexError, TypeError, KeyboardInterrupt):
            raise
        except Exception as e:
            bad = first_bad_chunk(self, selection)
            if bad is None:
                raise  # not a chunk of this array: a bug or the backend's own error, kept as it is
            raise CorruptStoreError(
                f"{self.store_path}: array '{self.path}' chunk {bad} (rows {bad * self.chunks[0]}-"
                f"{min((bad + 1) * self.chunks[0], self.shape[0]) - 1}) cannot be read ({type(e).__name__}: "
                f"{e}); {RESTORE_HINT.format(path=self.store_path)}"
            ) from None


def first_bad_chunk(arr: zarr.Array, selection: Any) -> int | None:
    """The first row chunk under ``selection`` (axis 0) that fails to read on its own, or None."""
    sel = selection[0] if isinstance(selection, tuple) and selection else selection
    start, stop = (0, arr.shape[0]) if not isinstance(sel, slice) else sel.indices(arr.shape[0])[:2]
    if isinstance(sel, (int, np.integer)):
        start, stop = int(sel) % max(arr.shape[0], 1), int(sel) % max(arr.shape[0], 1) + 1
    c = arr.chunks[0]
    for i in range(start // c, -(-stop // c)):
        try:
            zarr.Array.__getitem__(arr, slice(i * c, min((i + 1) * c, arr.shape[0])))
        except Exception:
            return i
    return None


@dataclass(frozen=True)
class StoreLayout:
    """Chunking and compression of a new store (see docs/store-format.md for the measurements)."""

    frame_chunk_bytes: int = 2 << 20  # ~2 MB uncompressed per image chunk
    scalar_chunk_rows: int = 1 << 16
    episode_chunk_rows: int = 1 << 14
    embedding_chunk_bytes: int = 2 << 20
    zstd_level: int = (
        1  # level 1 compresses Pong frames ~as well as 3 at a fraction of the CPU (benchmarks/chunking.py)
    )

    def image_chunk_rows(self, row_shape: tuple[int, ...]) -> int:
        """Rows per image chunk: the largest power of two within ``frame_chunk_bytes`` (84x84: 256, 210x160x3: 16)."""
        return 1 << max(0, (self.frame_chunk_bytes // int(np.prod(row_shape))).bit_length() - 1)


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


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def config_to_json(config: Any) -> dict:
    """A frozen config dataclass as plain JSON (paths and tuples made JSON-native)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


class Store:
    """A rise store on disk. Open with :func:`open_store` or :func:`create_store`."""

    def __init__(self, group: zarr.Group, path: str, mode: str):
        self.group = group
        self.path = path
        self.mode = mode
        meta = dict(group.attrs).get(ATTR)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise StoreError(f"{path} is a Zarr group but not a rise store (no '{ATTR}' attribute)")
        if meta.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{path} has store format version {meta.get('format_version')}; this rise reads version "
                f"{FORMAT_VERSION}: upgrade rise or re-export the store"
            )
        self._meta = meta

    # -- metadata ---------------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        return self._meta

    @property
    def rows(self) -> int:
        """Committed rows; arrays may be longer after an interrupted write."""
        return int(self._meta["rows"])

    @property
    def num_episodes(self) -> int:
        return int(self._meta["episodes"])

    @property
    def env(self) -> dict:
        return self._meta["env"]

    @property
    def has_frames(self) -> bool:
        return self.has_array("frame")

    def has_array(self, name: str) -> bool:
        """Whether array ``name`` exists (a damaged ``zarr.json`` raises :class:`CorruptStoreError`)."""
        try:
            return name in self.group
        except Exception as e:  # zarr parses the metadata to answer
            raise CorruptStoreError(
                f"{_meta_file(self.path, name)} is damaged ({type(e).__name__}: {e}); "
                + RESTORE_HINT.format(path=self.path)
            ) from None

    def array(self, name: str) -> zarr.Array:
        """Array ``name``; its reads report a damaged chunk by array and chunk (:class:`CheckedArray`)."""
        try:
            arr = self.group[name]
        except KeyError:
            raise StoreError(f"{self.path} has no array '{name}'") from None
        except Exception as e:  # its zarr.json is truncated or not zarr metadata
            raise CorruptStoreError(
                f"{_meta_file(self.path, name)} is damaged ({type(e).__name__}: {e}); "
                + RESTORE_HINT.format(path=self.path)
            ) from None
        return CheckedArray.wrap(arr, self.path) if isinstance(arr, zarr.Array) else arr

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Committed rows [start, stop) of a step array (or an episode array, bounded by episodes)."""
        bound = self.num_episodes if name.startswith("episodes/") else self.rows
        stop = bound if stop is None else min(stop, bound)
        return self.array(name)[start:stop]

    def episodes(self) -> dict[str, np.ndarray]:
        return {k: self.read(f"episodes/{k}") for k in EPISODE_ARRAYS}

    def embedding_names(self) -> list[str]:
        if "embeddings" not in self.group:
            return []
        try:
            return sorted(name for name, _ in self.group["embeddings"].arrays())
        except Exception as e:  # an embeddings array's zarr.json is truncated: name the folder
            raise CorruptStoreError(
                f"{_meta_file(self.path, 'embeddings')}/*/zarr.json: an embeddings array's metadata is damaged "
                f"({type(e).__name__}: {e}); " + RESTORE_HINT.format(path=self.path)
            ) from None

    def embedding(self, name: str) -> zarr.Array:
        if name not in self.embedding_names():
            have = ", ".join(self.embedding_names()) or "none"
            raise StoreError(
                f"{self.path} has no embeddings '{name}' (present: {have}); run: rise-data encode {self.path} --encoder NAME"
            )
        return self.array(f"embeddings/{name}")

    def embedding_meta(self, name: str) -> dict:
        return dict(self.embedding(name).attrs)[ATTR]

    def iter_chunks(self, name: str, rows_per_read: int, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        for s in range(start, self.rows, rows_per_read):
            yield s, self.read(name, s, s + rows_per_read)

    def _write_meta(self, **changes: Any) -> None:
        self._check_writable()
        self._meta = {**self._meta, **changes}
        self.group.attrs[ATTR] = self._meta  # one atomic zarr.json replace: this is the commit

    def _check_writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"{self.path} was opened read-only")

    # -- writing steps ----------------------------------------------------------------------
    def recover(self) -> int:
        """Trim crash tails (see :meth:`repair`); returns the rows dropped."""
        return self.repair()["rows_dropped"]

    def repair(self) -> dict:
        """Make array shapes equal the commit point again after a killed writer; returns what it did.

        A writer killed mid-append leaves arrays longer than the committed ``rows``/``episodes`` (readers
        ignore the tail, but a third-party reader trusting shapes would not), ``*.partial`` temp files, and
        possibly ``rows_done`` beyond ``rows``. This trims every array to the commit point, clamps
        ``rows_done`` and deletes the temp files; committed data is never touched. Call it holding the
        store's writer lock (``rise_data.store.lock.store_lock``): a tail is also what a live writer's
        uncommitted append looks like. ``rise-data collect`` runs it at start; ``rise-data repair`` runs it.
        """
        self._check_writable()
        dropped = 0
        for _, arr in self._step_arrays():
            if arr.shape[0] > self.rows:
                dropped = max(dropped, arr.shape[0] - self.rows)
                arr.resize((self.rows, *arr.shape[1:]))
        episodes = 0
        for name in EPISODE_ARRAYS:
            arr = self.group[f"episodes/{name}"]
            if arr.shape[0] > self.num_episodes:
                episodes = max(episodes, arr.shape[0] - self.num_episodes)
                arr.resize((self.num_episodes,))
        for name in self.embedding_names():
            arr = self.group[f"embeddings/{name}"]
            if arr.shape[0] > self.rows:
                arr.resize((self.rows, arr.shape[1]))
            meta = dict(arr.attrs).get(ATTR) or {}
            if int(meta.get("rows_done", 0)) > self.rows:
                arr.attrs[ATTR] = {**meta, "rows_done": self.rows}
        temp = partial_files(self.path)
        _remove_partial_files(self.path)
        return {"rows_dropped": dropped, "episodes_dropped": episodes, "temp_files_removed": len(temp)}

    def _step_arrays(self) -> Iterator[tuple[str, zarr.Array]]:
        for name in ("obs", "frame", *STEP_SCALARS):
            if self.has_array(name):
                yield name, self.array(name)

    def append_episodes(self, episodes: list[Episode]) -> tuple[int, int]:
        """Append whole episodes and commit them; returns the (first, last+1) rows written.

        Episodes may carry rows of existing embeddings arrays (``Episode.embeddings``, every episode the
        same names): they are written before the commit, and ``rows_done`` moves over them right after it
        (when no gap is left before them), so a kill at any point leaves ``rows_done <= rows`` with every
        row below it encoded.
        """
        self._check_writable()
        if not episodes:
            return self.rows, self.rows
        n0, e0 = self.rows, self.num_episodes
        cols = _episode_columns(episodes, first_row=n0, first_episode=e0, with_frames=self.has_frames)
        n1 = n0 + len(cols["action"])
        carried = self._carried_embeddings(episodes)
        for name, arr in self._step_arrays():
            if arr.shape[0] != n1:
                arr.resize((n1, *arr.shape[1:]))
            write_rows(arr, n0, cols[name], self.path)
        e1 = e0 + len(episodes)
        for name in EPISODE_ARRAYS:
            arr = self.group[f"episodes/{name}"]
            if arr.shape[0] != e1:
                arr.resize((e1,))
            arr[e0:e1] = cols[f"episodes/{name}"]
        # embeddings cover every row; new rows are not done unless the episodes carry them
        for name in self.embedding_names():
            arr = self.group[f"embeddings/{name}"]
            arr.resize((n1, arr.shape[1]))
            if name in carried:
                write_rows(arr, n0, _rows([ep.embeddings[name] for ep in episodes]), self.path)
        self._write_meta(rows=n1, episodes=e1)  # the commit
        for name in carried:
            arr = self.group[f"embeddings/{name}"]
            meta = dict(arr.attrs)[ATTR]
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
                dim = self.group[f"embeddings/{name}"].shape[1]
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
        self._write_meta(history=[*self._meta.get("history", []), entry])

    # -- embeddings -------------------------------------------------------------------------
    def create_embedding(
        self, name: str, dim: int, dtype: str, provenance: dict, layout: StoreLayout
    ) -> zarr.Array:
        self._check_writable()
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
            overwrite=True,
        )
        arr.attrs[ATTR] = {**provenance, "rows_done": 0}
        return arr

    def delete_embedding(self, name: str) -> None:
        self._check_writable()
        del self.group[f"embeddings/{name}"]

    # -- sharing: where the store lives, which embeddings a reader may use, checksums -------------
    @property
    def kind(self) -> str:
        """``directory`` (writable), ``zip`` (a packed store) or ``url`` (remote, fsspec): the last two are read-only."""
        return store_kind(self.path)

    def require_embedding(
        self, name: str, encoder: str | None = None, weights_id: str | None = None
    ) -> zarr.Array:
        """The embeddings array ``name`` if it is complete and was made by ``encoder`` with ``weights_id``.

        A reader that trains on embeddings calls this with the encoder it will run at acting time, so a
        store encoded by another network (or other weights) is refused instead of silently mixed.
        """
        arr = self.embedding(name)
        meta = dict(arr.attrs).get(ATTR) or {}
        spec = meta.get("encoder") if isinstance(meta.get("encoder"), dict) else {}  # an EncoderSpec record
        fix = (
            f"rise-data encode {self.path} --encoder {encoder or spec.get('name')} --name {name} --overwrite"
        )
        if encoder is not None and spec.get("name") != encoder:
            raise StoreError(
                f"{self.path}: embeddings '{name}' were made by encoder {spec.get('name')!r}, not {encoder!r}; "
                f"re-encode with: {fix}"
            )
        if weights_id is not None and spec.get("weights_id") != weights_id:
            raise StoreError(
                f"{self.path}: embeddings '{name}' were made with weights {spec.get('weights_id')}, not {weights_id}; "
                f"re-encode with: {fix}"
            )
        done = int(meta.get("rows_done", 0))
        if done < self.rows:
            raise StoreError(
                f"{self.path}: embeddings '{name}' are incomplete ({done} of {self.rows} rows); finish with: "
                f"rise-data encode {self.path} --encoder {spec.get('name')} --name {name}"
            )
        return arr

    def checksum_names(self) -> list[str]:
        """Every array a checksum covers: step arrays, the episode index, embeddings."""
        names = [name for name, _ in self._step_arrays()]
        names += [f"episodes/{k}" for k in EPISODE_ARRAYS]
        return names + [f"embeddings/{k}" for k in self.embedding_names()]

    def checksum_rows(self, name: str) -> int:
        """Rows of ``name`` a checksum covers: committed rows (episodes), or the encoded prefix of embeddings."""
        if name.startswith("episodes/"):
            return self.num_episodes
        if name.startswith("embeddings/"):
            meta = dict(self.group[name].attrs).get(ATTR) or {}
            return min(int(meta.get("rows_done", 0)), self.rows)
        return self.rows

    def checksum_tag(self, name: str) -> str | None:
        """What identifies an embeddings array beyond its name (its creation time): a re-encode is not corruption."""
        if not name.startswith("embeddings/"):
            return None
        return (dict(self.group[name].attrs).get(ATTR) or {}).get("created")

    @property
    def checksums(self) -> dict:
        """Recorded checksums: ``{name: {"rows": n, "sha256": hex, ...}}`` (empty if never sealed)."""
        return dict((self._meta.get("checksums") or {}).get("arrays") or {})

    def record_checksums(self, digests: dict, replace: bool = False) -> None:
        """Record per-array checksums (from :class:`RowHasher` or :func:`compute_checksums`) in the root attrs."""
        arrays = {} if replace else self.checksums
        arrays.update(digests)
        self._write_meta(checksums={"algorithm": "sha256", "time": now_iso(), "arrays": arrays})

    def seal(self, names: list[str] | None = None) -> dict:
        """Compute (streaming) and record the checksums of ``names`` (default: every array); returns them."""
        self._check_writable()
        digests = compute_checksums(self, names)
        self.record_checksums(digests, replace=names is None)
        return digests


def _direct_chunk_codec(arr: zarr.Array, root: str) -> Zstd | None:
    """The zstd codec when ``arr``'s whole chunks can be written as files directly, else None.

    Only for the layout rise creates on a local disk: chunks that split the row axis alone, the default
    "/" chunk keys, and codecs ``bytes`` (little-endian or single-byte dtypes) + ``zstd``. Such a chunk
    file is exactly numcodecs' zstd of the chunk's C-order bytes, which is what zarr writes itself.
    """
    if "://" in root or sys.byteorder != "little":
        return None
    meta = arr.metadata
    codecs = meta.codecs
    key = meta.chunk_key_encoding
    if not (
        len(codecs) == 2
        and isinstance(codecs[0], BytesCodec)
        and isinstance(codecs[1], ZstdCodec)
        and getattr(key, "name", "default") == "default"
        and getattr(key, "separator", "/") == "/"
        and tuple(arr.chunks[1:]) == tuple(arr.shape[1:])
    ):
        return None
    return Zstd(level=codecs[1].level, checksum=codecs[1].checksum)


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


def write_rows(arr: zarr.Array, start: int, data: np.ndarray | Rows, root: str) -> None:
    """``arr[start:start+len(data)] = data``, writing whole chunks as files directly when that is safe.

    zarr-python spends ~124 us per 100 kB Atari frame row on a write (copies and per-chunk Python/async
    overhead); compressing and writing whole chunks here costs ~24 us per row, 5.2x less, with identical
    bytes (``python benchmarks/store_write.py``, 2-core CPU). Partial chunks at either end, and any layout the fast path does not cover, go
    through zarr. Files are written to a temporary name and renamed, as zarr's LocalStore does.
    """
    stop = start + len(data)
    codec = _direct_chunk_codec(arr, root)
    c = arr.chunks[0]
    first_full = -(-start // c) * c
    last_full = stop // c * c
    if codec is None or last_full <= first_full:
        arr[start:stop] = data[0 : len(data)]
        return
    if first_full > start:
        arr[start:first_full] = data[: first_full - start]
    base = Path(root) / arr.path / "c"
    tail = (0,) * (arr.ndim - 1)
    for row in range(first_full, last_full, c):
        chunk = np.ascontiguousarray(data[row - start : row - start + c], dtype=arr.dtype)
        path = base.joinpath(str(row // c), *map(str, tail))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
        tmp.write_bytes(codec.encode(chunk))
        os.replace(tmp, path)
    if stop > last_full:
        arr[last_full:stop] = data[last_full - start :]


def _episode_columns(episodes: list[Episode], first_row: int, first_episode: int, with_frames: bool) -> dict:
    """Concatenate episodes into step-major columns with flags, padding and the episode index."""
    lengths = np.array([ep.length for ep in episodes], dtype=np.int64)
    rows = lengths + 1
    starts = first_row + np.concatenate([[0], np.cumsum(rows)[:-1]])
    n = int(rows.sum())
    pad = np.zeros(1)
    cols: dict[str, np.ndarray] = {
        "obs": _rows([ep.obs for ep in episodes]),
        "action": np.concatenate([np.append(ep.action, pad).astype(np.int64) for ep in episodes]),
        "reward": np.concatenate([np.append(ep.reward, pad).astype(np.float32) for ep in episodes]),
        "is_first": np.zeros(n, bool),
        "is_last": np.zeros(n, bool),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
        "episode_id": np.repeat(np.arange(first_episode, first_episode + len(episodes)), rows),
    }
    if with_frames:
        cols["frame"] = _rows([ep.frame for ep in episodes])
    local_first = starts - first_row
    local_last = local_first + rows - 1
    cols["is_first"][local_first] = True
    cols["is_last"][local_last] = True
    cols["terminated"][local_last] = [ep.terminated for ep in episodes]
    cols["truncated"][local_last] = [ep.truncated for ep in episodes]
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


def _meta_file(path: str, name: str) -> str:
    return f"{path.rstrip('/')}/{name}/zarr.json"


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


def create_store(
    path: str | os.PathLike,
    env: dict,
    obs_shape: tuple[int, ...],
    frame_shape: tuple[int, ...] | None,
    layout: StoreLayout | None = None,
) -> Store:
    """Create an empty store for one env spec; ``frame_shape=None`` stores no RGB frames."""
    layout = layout or StoreLayout()
    path = str(path)
    if not is_empty_folder(path):
        raise StoreError(f"{path} exists and is not empty; choose a new path or append to a rise store there")
    group = zarr.open_group(path, mode="a", zarr_format=3)  # "w-" would refuse the writer lock in LOCK_DIR
    zstd = ZstdCodec(level=layout.zstd_level)

    def image(name: str, shape: tuple[int, ...], dims: tuple[str, ...]) -> None:
        rows = layout.image_chunk_rows(shape)
        group.create_array(
            name,
            shape=(0, *shape),
            chunks=(rows, *shape),
            dtype="uint8",
            compressors=zstd,
            fill_value=0,
            dimension_names=("row", *dims),
        )

    image("obs", tuple(obs_shape), ("y", "x"))
    if frame_shape is not None:
        image("frame", tuple(frame_shape), ("y", "x", "channel"))
    for name, dtype in STEP_SCALARS.items():
        group.create_array(
            name,
            shape=(0,),
            chunks=(layout.scalar_chunk_rows,),
            dtype=dtype,
            compressors=zstd,
            fill_value=0,
            dimension_names=("row",),
        )
    for name, dtype in EPISODE_ARRAYS.items():
        group.create_array(
            f"episodes/{name}",
            shape=(0,),
            chunks=(layout.episode_chunk_rows,),
            dtype=dtype,
            compressors=zstd,
            fill_value=0,
            dimension_names=("episode",),
        )
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
    return Store(group, path, "a")


def is_empty_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` does not exist or is a folder holding nothing but rise's own ``LOCK_DIR``."""
    p = Path(path)
    if not p.exists():
        return True
    return p.is_dir() and all(c.name == LOCK_DIR for c in p.iterdir())


def store_kind(path: str | os.PathLike) -> str:
    """``url`` for fsspec URLs (``s3://``, ``gs://``, ``file://``, ...), ``zip`` for packed stores, else ``directory``."""
    path = str(path)
    if "://" in path:
        return "url"
    return "zip" if path.lower().endswith(".zip") and not Path(path).is_dir() else "directory"


def storage_options_for(url: str) -> dict:
    """fsspec options for a URL, from the usual environment variables (s3: AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_DEFAULT_REGION).

    Other protocols get no options: their libraries read their own environment (gcsfs, adlfs, ...).
    """
    protocol = url.split("://", 1)[0].split("::")[-1].lower()
    if protocol not in ("s3", "s3a"):
        return {}
    env = os.environ
    opts: dict[str, Any] = {}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        opts["key"] = env["AWS_ACCESS_KEY_ID"]
        opts["secret"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            opts["token"] = env["AWS_SESSION_TOKEN"]
    elif env.get("AWS_NO_SIGN_REQUEST", "").lower() in ("1", "true", "yes"):
        opts["anon"] = True
    client: dict[str, str] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        client["endpoint_url"] = endpoint
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")
    if region:
        client["region_name"] = region
    if client:
        opts["client_kwargs"] = client
    return opts


def open_store(path: str | os.PathLike, mode: str = "r", storage_options: dict | None = None) -> Store:
    """Open an existing store read-only (``"r"``) or for appending (``"a"``).

    ``path`` is a store directory, a packed ``*.zip`` (see ``rise-data pack``), or an fsspec URL
    (``s3://bucket/pong.zarr``, ``s3://bucket/pong.zip``, ``file:///...``); zips and URLs are read-only.
    ``storage_options`` default to :func:`storage_options_for` (credentials from the environment).
    """
    path = str(path)
    kind = store_kind(path)
    if kind != "directory":
        return _open_readonly(path, kind, mode, storage_options)
    if not Path(path).exists():
        raise StoreError(f"{path} does not exist; create it with: rise-data collect ENV_ID {path}")
    if not Path(path).is_dir():
        raise StoreError(
            f"{path} is a file, not a store directory; give a store directory (or a packed .zip)"
        )
    try:
        group = zarr.open_group(path, mode="r" if mode == "r" else "r+", zarr_format=3)
    except json.JSONDecodeError as e:
        raise CorruptStoreError(
            f"{Path(path) / 'zarr.json'} is damaged (truncated? {e}); restore the store from its pack or a copy"
        ) from None
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise StoreError(f"{path} is not a readable Zarr v3 group ({type(e).__name__}: {e})") from None
    return Store(group, path, mode)


def _open_readonly(path: str, kind: str, mode: str, storage_options: dict | None) -> Store:
    from zarr.storage import FsspecStore, ZipStore

    what = "a packed store" if kind == "zip" else "remote"
    if mode != "r":
        raise StoreError(
            f"{path} is {what} and read-only; write to a store directory (e.g. rise-data import)"
        )
    if kind == "zip" and not Path(path).is_file():
        raise StoreError(f"{path} does not exist; make it with: rise-data pack STORE {path}")
    opts = storage_options_for(path) if storage_options is None else storage_options
    if kind == "zip":
        check_zip_members(path)
    try:
        if kind == "zip":
            backend = ZipStore(path, mode="r")
        elif path.lower().endswith(".zip"):  # a packed store behind a URL: zipfile over the remote file
            backend = _url_zip_store(path, opts)
        else:
            backend = FsspecStore.from_url(path, read_only=True, storage_options=opts)
        group = zarr.open_group(store=backend, mode="r", zarr_format=3)
    except Exception as e:  # any backend's error (missing key, credentials, network): one line
        missing = _missing_bucket(path, opts) if kind == "url" else None
        if missing:
            raise StoreError(missing) from None
        raise StoreError(f"{path} is not a readable Zarr v3 group ({type(e).__name__}: {e})") from None
    return Store(group, path, "r")


def _missing_bucket(url: str, opts: dict) -> str | None:
    """A one-line reason when a URL's bucket (or store prefix) does not exist; None if it does or cannot tell."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url, **opts)
        bucket = root.split("/", 1)[0]
        if not fs.exists(bucket):
            return (
                f"{url}: bucket '{bucket}' does not exist (or is not visible with these credentials); check the "
                "bucket name, AWS_ENDPOINT_URL and the credentials"
            )
        if not fs.exists(root.rstrip("/") + "/zarr.json"):
            return (
                f"{url}: no store at this path (no zarr.json under it); check the path after the bucket name"
            )
    except Exception:  # the backend cannot answer (network, permissions): keep the original error
        return None
    return None


def check_zip_members(path: str) -> None:
    """Refuse a zip whose member names could escape a folder or are links: a packed store holds neither.

    Reading never extracts members, but a zip that holds such names was not written by ``rise-data pack``
    and may be unpacked by other tools; refusing it keeps every reader on the safe side.
    """
    import stat
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (OSError, zipfile.BadZipFile) as e:
        raise CorruptStoreError(
            f"{path} is not a readable zip file ({e}); re-pack or re-download it"
        ) from None
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise CorruptStoreError(
                f"{path} holds member '{name}', whose name escapes the store folder; rise-data pack never "
                "writes such names: do not use or unpack this file"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise CorruptStoreError(
                f"{path} holds member '{name}', a symbolic link; rise-data pack never writes links: do not "
                "use or unpack this file"
            )


def _url_zip_store(url: str, opts: dict):
    """zarr's ZipStore reading a zip behind a URL through an fsspec file (ranged reads, nothing downloaded whole).

    (fsspec's ``zip::`` URLs list nested groups wrongly through zarr's FsspecStore, so zarr's own
    ZipStore reads the remote file object instead.)
    """
    import threading
    import zipfile

    import fsspec
    from zarr.storage import ZipStore

    class _FileZipStore(ZipStore):
        def __init__(self, fileobj: Any, name: str):
            super().__init__(Path(name), mode="r")
            self._fileobj = fileobj

        def _sync_open(self) -> None:
            if self._is_open:
                raise ValueError("store is already open")
            self._lock = threading.RLock()
            self._zf = zipfile.ZipFile(self._fileobj, mode="r")
            self._is_open = True

    return _FileZipStore(fsspec.open(url, "rb", **opts).open(), url)


# -- checksums ------------------------------------------------------------------------------------
READ_BLOCK_BYTES = 64 << 20  # rows read at once when streaming a whole array (whole chunks, ~64 MB)


def block_rows(arr: zarr.Array, budget: int = READ_BLOCK_BYTES) -> int:
    """Rows per streaming read: a whole number of chunks, about ``budget`` bytes uncompressed."""
    row = int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize
    chunk = arr.chunks[0]
    return chunk * max(1, budget // max(1, row * chunk))


class RowHasher:
    """sha256 of each array's rows, fed in order: the raw little-endian C-order bytes of rows [0, n).

    Writers that produce a whole store (merge, split, import, ...) feed it what they write, so the
    checksums cost no extra read; :func:`compute_checksums` feeds it by streaming a store.
    """

    def __init__(self) -> None:
        self._hash: dict[str, Any] = {}
        self._rows: dict[str, int] = {}
        self._tags: dict[str, str | None] = {}

    def update(self, name: str, rows: Any, tag: str | None = None) -> None:
        h = self._hash.get(name)
        if h is None:
            h, self._rows[name] = hashlib.sha256(), 0
            self._hash[name] = h
        if tag is not None:
            self._tags[name] = tag
        for part in getattr(rows, "parts", None) or [rows]:  # a lazily concatenated Rows, or one array
            a = np.asarray(part)
            a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype)
            h.update(a.reshape(-1).view(np.uint8).data)
            self._rows[name] += len(a)

    def digests(self) -> dict:
        out = {}
        for name, h in self._hash.items():
            out[name] = {"rows": self._rows[name], "sha256": h.hexdigest()}
            if self._tags.get(name) is not None:
                out[name]["created"] = self._tags[name]
        return out


def compute_checksums(store: Store, names: list[str] | None = None) -> dict:
    """Checksums of ``names`` (default: every array) over the committed rows, streaming ~64 MB at a time."""
    hasher = RowHasher()
    for name in store.checksum_names() if names is None else names:
        arr = store.array(name)
        bound = store.checksum_rows(name)
        step = block_rows(arr)
        hasher.update(name, arr[0:0], tag=store.checksum_tag(name))
        for s in range(0, bound, step):
            hasher.update(name, arr[s : min(s + step, bound)])
    return hasher.digests()


def data_fingerprint(checksums: dict) -> str:
    """One sha256 naming a store's trajectories: over the checksums of its step and episode arrays.

    Embeddings are left out: they are derived annotations with their own provenance, so adding an
    encoder's embeddings does not change what a dataset id names.
    """
    lines = sorted(
        f"{name} {c['rows']} {c['sha256']}"
        for name, c in checksums.items()
        if not name.startswith("embeddings/")
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
