"""Checksums: sha256 of each array's committed rows, streamed, and the fingerprint naming a store's data."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

if TYPE_CHECKING:
    from rise_data.store.store import Store

READ_BLOCK_BYTES = 16 << 20  # rows read at once when streaming a whole array (whole chunks, ~16 MB)


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
    """Checksums of ``names`` (default: every array) over the committed rows, streaming ~16 MB at a time."""
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
