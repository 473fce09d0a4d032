"""The reader: :class:`Store`, a rise store's committed rows, episodes, embeddings and recorded checksums.

Every reader uses only the committed prefix (the root attribute's ``rows``/``episodes``): arrays may be
longer after an interrupted write. Arrays come through :meth:`Store.array`, whose reads name a damaged chunk.
Writing is :class:`~rise_data.store.write.WritableStore`'s job; opening, :func:`~rise_data.store.open.open_store`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import zarr

from rise_data.encode.spec import upgrade_record
from rise_data.store.format import (
    ATTR,
    EPISODE_ARRAYS,
    FORMAT_NAME,
    READABLE_VERSIONS,
    RESTORE_HINT,
    STEP_SCALARS,
    CorruptStoreError,
    StoreError,
    meta_file,
    store_kind,
)
from rise_data.store.pipeline import reading


class CheckedArray(zarr.Array):
    """A zarr array whose reads name the array and chunk that fails to decode, in one line.

    zarr reports a damaged chunk as e.g. ``RuntimeError: Zstd decompression error`` naming no array;
    every reader of a :class:`Store` gets its arrays through :meth:`Store.array`, so wrapping here once
    gives all of them (encode, train, export, ...) the same error.
    """

    location: str = "?"  # the store's path, for the message (zarr's own ``store_path`` is another thing)

    @classmethod
    def wrap(cls, arr: zarr.Array, location: str) -> CheckedArray:
        out = cls(arr._async_array)
        out.location = location
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
                f"{self.location}: array '{self.path}' chunk {bad} (rows {bad * self.chunks[0]}-"
                f"{min((bad + 1) * self.chunks[0], self.shape[0]) - 1}) cannot be read ({type(e).__name__}: "
                f"{e}); {RESTORE_HINT.format(path=self.location)}"
            ) from None


def _record(attrs: Any) -> dict[str, Any]:
    """The ``rise`` record among a zarr node's attributes (empty if it has none)."""
    record = dict(attrs).get(ATTR)
    return record if isinstance(record, dict) else {}


def _group(node: Any) -> zarr.Group:
    if not isinstance(node, zarr.Group):
        raise CorruptStoreError(f"{node.store_path}: '{node.path}' is an array where a group belongs")
    return node


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


class Store:
    """A rise store opened for reading. Open with :func:`~rise_data.store.open_store`."""

    mode = "r"

    def __init__(self, group: zarr.Group, path: str):
        self.group = group
        self.path = path
        meta = dict(group.attrs).get(ATTR)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise StoreError(f"{path} is a Zarr group but not a rise store (no '{ATTR}' attribute)")
        if meta.get("format_version") not in READABLE_VERSIONS:
            raise StoreError(
                f"{path} has store format version {meta.get('format_version')}; this rise reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}: upgrade rise (pip install -U rise)"
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
                f"{meta_file(self.path, name)} is damaged ({type(e).__name__}: {e}); "
                + RESTORE_HINT.format(path=self.path)
            ) from None

    def array(self, name: str) -> zarr.Array:
        """Array ``name``; its reads report a damaged chunk by array and chunk (:class:`CheckedArray`)."""
        pipeline = reading() if self.mode == "r" else contextlib.nullcontext()  # zarrs: readers only
        try:
            with pipeline:
                arr = self.group[name]
        except KeyError:
            raise StoreError(f"{self.path} has no array '{name}'") from None
        except Exception as e:  # its zarr.json is truncated or not zarr metadata
            raise CorruptStoreError(
                f"{meta_file(self.path, name)} is damaged ({type(e).__name__}: {e}); "
                + RESTORE_HINT.format(path=self.path)
            ) from None
        if not isinstance(arr, zarr.Array):
            raise StoreError(f"{self.path}: '{name}' is a group of arrays, not an array")
        return CheckedArray.wrap(arr, self.path)

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Committed rows [start, stop) of a step array (or an episode array, bounded by episodes)."""
        bound = self.num_episodes if name.startswith("episodes/") else self.rows
        stop = bound if stop is None else min(stop, bound)
        return np.asarray(self.array(name)[start:stop])

    def episodes(self) -> dict[str, np.ndarray]:
        return {k: self.read(f"episodes/{k}") for k in EPISODE_ARRAYS}

    def embedding_names(self) -> list[str]:
        if "embeddings" not in self.group:
            return []
        try:
            return sorted(name for name, _ in _group(self.group["embeddings"]).arrays())
        except Exception as e:  # an embeddings array's zarr.json is truncated: name the folder
            raise CorruptStoreError(
                f"{meta_file(self.path, 'embeddings')}/*/zarr.json: an embeddings array's metadata is damaged "
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
        """Embeddings ``name``'s attributes in the current layout (a format 1 record is read as format 2)."""
        return upgrade_record(cast(dict, dict(self.embedding(name).attrs)[ATTR]))

    def step_arrays(self) -> Iterator[tuple[str, zarr.Array]]:
        """(name, array) of every per-step array the store has (obs, frame if stored, the scalars)."""
        for name in ("obs", "frame", *STEP_SCALARS):
            if self.has_array(name):
                yield name, self.array(name)

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
        meta = self.embedding_meta(name)
        spec: dict = meta["encoder"] if isinstance(meta.get("encoder"), dict) else {}  # an EncoderSpec record
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
        names = [name for name, _ in self.step_arrays()]
        names += [f"episodes/{k}" for k in EPISODE_ARRAYS]
        return names + [f"embeddings/{k}" for k in self.embedding_names()]

    def checksum_rows(self, name: str) -> int:
        """Rows of ``name`` a checksum covers: committed rows (episodes), or the encoded prefix of embeddings."""
        if name.startswith("episodes/"):
            return self.num_episodes
        if name.startswith("embeddings/"):
            return min(int(_record(self.group[name].attrs).get("rows_done", 0)), self.rows)
        return self.rows

    def checksum_tag(self, name: str) -> str | None:
        """What identifies an embeddings array beyond its name (its creation time): a re-encode is not corruption."""
        if not name.startswith("embeddings/"):
            return None
        return _record(self.group[name].attrs).get("created")

    @property
    def checksums(self) -> dict:
        """Recorded checksums: ``{name: {"rows": n, "sha256": hex, ...}}`` (empty if never sealed)."""
        return dict((self._meta.get("checksums") or {}).get("arrays") or {})
