"""Commits that survive power loss: :class:`SyncedLocalStore`, zarr's ``LocalStore`` that fsyncs in commit order.

A rename is atomic against a killed process, but after an OS crash or power loss the kernel may have
written a later file and not an earlier one: metadata that commits rows could reach the disk before the
chunks it points to. Every metadata document (``zarr.json``: the root's commit point, an array's shape,
an embeddings array's ``rows_done``) is therefore a barrier: before it is replaced, each file written since
the previous barrier and each directory that gained or lost an entry is fsynced (from a thread pool, each
started as soon as its write is done, so they overlap the writes after them); the document itself is
written to a temporary file, fsynced, renamed over the old one, and its directory fsynced.
``durability="fast"`` is zarr's plain ``LocalStore`` (atomic renames, no fsync): it survives a kill -9,
not a power loss (docs/store-format.md "Durability").
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

from rise_data.store.format import StoreError

META_NAME = "zarr.json"
# fsyncs issued together share the filesystem's journal commits: on this 2-core machine's ext4 (under load),
# fsyncing 100 new chunk files and their 301 directories took 520-960 ms one by one, 40-110 ms from 4-64 threads
FSYNC_THREADS = 16


@functools.cache
def _fsync_pool(pid: int) -> ThreadPoolExecutor:
    """One pool per process: a forked child inherits the pool object but not its threads."""
    return ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="rise-fsync")


class _Pending:
    """The fsyncs owed since the last barrier, shared by every handle of one store (``with_read_only``).

    Each is started in the pool as soon as its write is done, so it overlaps the writes after it; the
    barrier waits for all of them. A path's fsync that has not started yet covers a later change too,
    so it is not queued twice.
    """

    def __init__(self) -> None:
        self.futures: list[Future] = []
        self.queued: dict[tuple[Path, bool], Future] = {}
        self.deferred: set[tuple[Path, bool]] = set()
        self.lock = threading.Lock()
        # zarr writes sibling metadata concurrently (a group's and its first array's): one barrier at a time
        self.commit_lock = threading.Lock()

    def add(self, files: tuple[Path, ...] = (), dirs: tuple[Path, ...] = ()) -> None:
        """Start the fsyncs of paths that were just written or gained or lost an entry."""
        jobs = [*((p, False) for p in files), *((d, True) for d in dirs)]
        pool = _fsync_pool(os.getpid())
        with self.lock:
            for job in jobs:
                queued = self.queued.get(job)
                if queued is None or queued.running() or queued.done():
                    self.queued[job] = future = pool.submit(fsync_path, *job)
                    self.futures.append(future)

    def defer(self, dirs: tuple[Path, ...]) -> None:
        """fsync these at the next barrier (they may not exist yet)."""
        with self.lock:
            self.deferred.update((d, True) for d in dirs)

    def wait(self) -> None:
        """Block until every fsync owed so far is done; re-raises the first error."""
        with self.lock:
            deferred, self.deferred = self.deferred, set()
        self.add(dirs=tuple(d for d, _ in deferred))
        with self.lock:
            futures, self.futures, self.queued = self.futures, [], {}
        for f in futures:
            f.result()


def fsync_path(path: Path, directory: bool = False) -> None:
    """fsync a file or directory by name; one that is gone (replaced or deleted since) needs none."""
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, path: Path) -> None:
    """Rename the finished ``tmp`` to ``path`` durably: its bytes fsynced before the rename (the name never
    points at bytes a power loss could still lose), its directory after (the rename itself survives)."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent, directory=True)


def new_dirs(path: Path) -> tuple[Path, ...]:
    """The directories writing ``path`` will create, and the existing one that gains the first of them."""
    created = []
    d = path.parent
    while not d.exists():
        created.append(d)
        d = d.parent
    return (*created, d) if created else ()


class SyncedLocalStore(LocalStore):
    """A ``LocalStore`` whose metadata writes are durable commits of everything written before them."""

    def __init__(self, root: Path | str, *, read_only: bool = False, pending: _Pending | None = None):
        super().__init__(root, read_only=read_only)
        self._pending = pending or _Pending()
        if not read_only:  # a new store folder's own entry, made durable by the first commit
            self._pending.defer((self.root.absolute(), self.root.absolute().parent))

    def with_read_only(self, read_only: bool = False) -> SyncedLocalStore:
        return type(self)(self.root, read_only=read_only, pending=self._pending)

    # -- writes -----------------------------------------------------------------------------
    async def _set(self, key: str, value: Buffer, exclusive: bool = False) -> None:
        if not self._is_open:
            await self._open()
        if is_metadata(key):
            self._check_writable()
            await asyncio.to_thread(self._commit, key, value, exclusive)
            return
        dirs = new_dirs(self.root / key)
        await super()._set(key, value, exclusive)
        self._written(key, dirs)

    def set_sync(self, key: str, value: Buffer) -> None:
        if is_metadata(key):
            self._ensure_open_sync()
            self._check_writable()
            self._commit(key, value)
            return
        dirs = new_dirs(self.root / key)
        super().set_sync(key, value)
        self._written(key, dirs)

    def _written(self, key: str, dirs: tuple[Path, ...]) -> None:
        path = self.root / key
        self._pending.add(files=(path,), dirs=(*dirs, path.parent))

    async def delete(self, key: str) -> None:
        await super().delete(key)
        self._pending.add(dirs=((self.root / key).parent,))

    def delete_sync(self, key: str) -> None:
        super().delete_sync(key)
        self._pending.add(dirs=((self.root / key).parent,))

    async def delete_dir(self, prefix: str) -> None:
        await super().delete_dir(prefix)
        self._pending.add(dirs=((self.root / prefix).parent,))

    # -- the barrier ------------------------------------------------------------------------
    def flush(self) -> None:
        """Wait until every file written since the last barrier and every directory that changed is fsynced."""
        self._pending.wait()

    def _commit(self, key: str, value: Buffer, exclusive: bool = False) -> None:
        """Write one metadata document durably, after everything written before it."""
        with self._pending.commit_lock:
            self._commit_locked(self.root / key, value, exclusive)

    def _commit_locked(self, path: Path, value: Buffer, exclusive: bool) -> None:
        if exclusive and path.exists():
            raise FileExistsError(path)
        created = new_dirs(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._pending.add(dirs=created)
        self.flush()
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")  # repair removes *.partial
        try:
            with open(tmp, "wb") as f:
                f.write(value.as_buffer_like())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_path(path.parent, directory=True)


def is_metadata(key: str) -> bool:
    return key.rsplit("/", 1)[-1] == META_NAME


# durability name -> the local backend a writer opens (the names are format.Durability's)
BACKENDS: dict[str, type[LocalStore]] = {"safe": SyncedLocalStore, "fast": LocalStore}


def local_backend(path: str | os.PathLike, durability: str) -> LocalStore:
    """The zarr store a writer of a store folder opens: fsynced commits (``safe``) or not (``fast``)."""
    if durability not in BACKENDS:
        raise StoreError(f"durability must be one of {', '.join(BACKENDS)}, got '{durability}'")
    return BACKENDS[durability](Path(path))
