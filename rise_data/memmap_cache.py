"""A store array's committed rows as an uncompressed ``.npy`` file, built once and opened as a memmap.

Random row gathers from Zarr decode a whole chunk per row (about 1000x slower than numpy on memory),
so readers that sample rows at random (the replay's store source, ``StoreDataset(cache_dir=...)``)
read a plain copy instead: built once by streaming whole chunks, named by a fingerprint of the store,
shared by every process and run that reads the same store. Building writes through the file, not
through a memmap, so the builder's resident memory stays one read block whatever the store's size.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

__all__ = ["array_cache", "array_cache_path", "default_cache_dir"]

READ_BYTES = 64 << 20  # bytes per streamed read of the store (rounded to whole chunks)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rise/obs`` (or ``~/.cache/rise/obs``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rise" / "obs"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def array_cache_path(store, name: str = "obs", cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the cache of array ``name`` of ``store`` lives: named by a fingerprint of the store.

    The fingerprint hashes the absolute path, the committed rows, the store's creation time, the number
    of history entries and (embeddings) the array's creation time, so it changes whenever the store is
    recreated, grows or is re-encoded.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = store.path if "://" in str(store.path) else os.path.abspath(store.path)
    meta = store.meta
    tag = store.checksum_tag(name)
    key = json.dumps([path, store.rows, meta.get("created"), len(meta.get("history", []))])
    if name != "obs":  # the obs cache keeps the name it always had
        key = json.dumps([key, name, tag])
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(str(path).rstrip("/")).name) or "store"
    array = "" if name == "obs" else "-" + re.sub(r"[^A-Za-z0-9_.]", "_", name)
    return root / f"{stem}{array}-{_sha(path)[:12]}-{_sha(key)[:16]}.npy"


def array_cache(store, name: str = "obs", cache_dir: str | os.PathLike | None = None) -> np.memmap:
    """The committed rows of ``store``'s array ``name`` as a read-only memmap, building the file if needed.

    The file is written under a temporary name and renamed into place when complete, so an interrupted
    build never leaves a partial cache under the final name. A rebuilt cache (the store grew) replaces
    the older caches of the same array of the same store path.
    """
    final = array_cache_path(store, name, cache_dir)
    arr = store.array(name)
    rows = store.checksum_rows(name) if name.startswith("embeddings/") else store.rows
    shape, dtype = (rows, *arr.shape[1:]), np.dtype(arr.dtype)
    if final.exists():
        try:
            mm = np.load(final, mmap_mode="r")
            if mm.shape == shape and mm.dtype == dtype:
                return mm
        except (ValueError, OSError):
            pass  # unreadable: rebuild below
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = final.name.rsplit("-", 1)[0]
    _remove_dead_temps(final.parent, prefix)
    tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    try:
        _write_npy(tmp, store, name, shape, dtype)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for old in final.parent.glob(f"{prefix}-*.npy"):
        if old != final:  # an older version of this store; open memmaps of it stay valid on POSIX
            old.unlink(missing_ok=True)
    return np.load(final, mmap_mode="r")


def _write_npy(path: Path, store, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Stream rows [0, shape[0]) of ``name`` into an ``.npy`` file, one chunk-aligned block at a time."""
    chunk = store.array(name).chunks[0]
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    step = chunk * max(1, READ_BYTES // max(1, chunk * row_bytes))
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for s in range(0, shape[0], step):
            block = np.ascontiguousarray(store.read(name, s, min(s + step, shape[0])), dtype=dtype)
            f.write(block.data)


def _remove_dead_temps(folder: Path, prefix: str) -> None:
    """Delete temp files of this store left by builds whose process no longer exists (a kill)."""
    for tmp in folder.glob(f"{prefix}-*.npy.*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[1])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, someone else's
