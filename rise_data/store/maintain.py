"""Seal and repair: the two operations that rewrite a store directory's own records under its writer lock."""

from __future__ import annotations

import time

from tqdm import tqdm

from rise_data.store.checksums import compute_checksums
from rise_data.store.lock import store_lock
from rise_data.store.open import open_store
from rise_data.store.write import WritableStore

__all__ = ["repair_store", "seal_store"]


def seal_store(path: str, progress: bool = False) -> dict:
    """Record every array's sha256 (streamed, one array at a time) for ``check`` to verify.

    Returns ``{"arrays", "rows", "seconds"}``. Refused while a writer holds the store.
    """
    open_store(path, mode="a")  # a writable store directory, before its lock is taken
    with store_lock(path, "seal"):
        store = _writable(path)
        t0 = time.perf_counter()
        digests: dict = {}
        for name in tqdm(store.checksum_names(), unit="array", desc="seal", disable=not progress):
            digests.update(compute_checksums(store, [name]))
        store.record_checksums(digests, replace=True)
    return {"arrays": len(digests), "rows": store.rows, "seconds": time.perf_counter() - t0}


def repair_store(path: str) -> dict:
    """Trim a killed writer's uncommitted tails and temp files (committed data is never touched).

    Returns ``{"rows_dropped", "episodes_dropped", "temp_files_removed"}``. Refused while a writer runs.
    """
    open_store(path, mode="a")  # a writable store directory, before its lock is taken
    with store_lock(path, "repair"):
        return _writable(path).repair()


def _writable(path: str) -> WritableStore:
    store = open_store(path, mode="a")
    assert isinstance(store, WritableStore)  # mode "a" opens a store directory for writing
    return store
