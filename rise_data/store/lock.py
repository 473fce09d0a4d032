"""One writer per store: an exclusive OS lock held for the life of a writing command.

``store_lock(path, command)`` takes ``fcntl.flock`` on ``<store>/.rise/locks/<name>.lock``. The kernel
drops the lock when the holder's file descriptor closes, so a killed writer (SIGKILL, OOM, power off)
never leaves a stale lock behind: no timeouts, no pid checks. A clean release deletes the file (an idle
store folder is plain Zarr); one a killed writer leaves locks nothing and goes with the next release. The holder writes who it is (pid,
host, command, since) into the lock file, so a second writer is refused with one line naming the holder.

Names: ``writer`` guards the rows and the root metadata (collect, write-back, edit, import, seal, repair,
...): hold it for any write that appends/trims rows, resizes arrays or rewrites the root ``zarr.json``
(commit point, history). ``encode-<embedding>`` serialises the encoders of one embeddings array. Appending
rows resizes every embeddings array (rewriting its ``zarr.json``, attributes included), so an encoder
racing a collect could lose ``rows_done`` updates or a shape: encode holds ``writer`` too, or else appends
and encodes of one store must not overlap.

A forked child process inherits the lock (flock belongs to the open file): a killed writer's lock is
released once its env worker processes exit too (gymnasium's async workers exit when their pipe closes).

Where no lock is possible: ``s3://`` and other URLs (object stores have no advisory locks; rise warns once
per process and proceeds, so the user must keep to one writer), and packed ``*.zip`` stores (read-only, so
nothing to guard). On NFS, Linux emulates ``flock`` with byte-range locks; other network filesystems may
not honour it. See docs/store-format.md, "Writers and locks".
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import re
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

from rise_data.store.format import LOCK_DIR, StoreError, store_kind

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_warned_remote: set[str] = set()


class LockHeld(StoreError):
    """Another process holds the store's lock; the message names it and says what to do."""


def lock_path(store: str | os.PathLike, name: str = "writer") -> Path:
    """The lock file of ``name`` inside a store folder: ``<store>/.rise/locks/<name>.lock``."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"lock name {name!r} must be letters, digits, '.', '_' or '-' (e.g. writer, encode-resnet18)"
        )
    return Path(store) / LOCK_DIR / "locks" / f"{name}.lock"


def holder(store: str | os.PathLike, name: str = "writer") -> dict | None:
    """Who holds the lock now (``{"pid", "host", "command", "since"}``), or None when it is free."""
    path = lock_path(store, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def store_lock(path: str | os.PathLike, command: str, *, name: str = "writer") -> Iterator[Path | None]:
    """Hold the store's exclusive ``name`` lock for the ``with`` block; yields the lock file (None: no lock).

    Raises :class:`LockHeld` at once (no waiting) when another process, or another ``store_lock`` of this
    process, holds it. Creates the store folder if it does not exist yet, so a writer creating a store is
    guarded from its first file on (and removes it on release if it is still empty). The lock file and
    the empty ``.rise`` folders are deleted on release. Not re-entrant.
    """
    path = str(path)
    kind = store_kind(path)
    if kind != "directory":
        if kind == "url" and path not in _warned_remote:
            _warned_remote.add(path)
            warnings.warn(
                f"{path}: remote stores cannot be locked; make sure no other process writes it", stacklevel=3
            )
        yield None
        return
    made_root = not Path(path).exists()
    fd, file = _acquire(path, name)
    try:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield file
    finally:
        # remove the lock file while still holding it (a process that opened it meanwhile notices the
        # unlinked inode and retries), then the empty folders, so an idle store folder is plain Zarr
        file.unlink(missing_ok=True)
        for folder in (file.parent, file.parent.parent, *([Path(path)] if made_root else [])):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: another lock, or the store's own files
        os.close(fd)


def _acquire(store: str, name: str) -> tuple[int, Path]:
    """Open and flock the lock file; retry when its holder removed it between our open and our flock."""
    for _ in range(100):
        fd, file = _open_lock_file(store, name)
        if fd < 0:
            continue  # the folder was removed between mkdir and open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_info(fd)
            os.close(fd)
            raise LockHeld(_held_message(store, name, info)) from None
        try:
            current = os.stat(file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(fd, 0)
            return fd, file
        os.close(fd)
    raise LockHeld(f"{store}: the {name} lock kept changing hands; retry")


def _open_lock_file(store: str, name: str) -> tuple[int, Path]:
    """(fd, path) of the lock file, created if missing; fd -1 if its folder vanished meanwhile (retry)."""
    file = lock_path(store, name)
    root = Path(store)
    if root.exists() and not root.is_dir():
        raise StoreError(f"{store} is a file, not a store folder; give a folder path")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        # no O_TRUNC: the file may name the current holder, and we do not hold the lock yet
        return os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), file
    except (FileNotFoundError, FileExistsError):
        # a releasing holder removed a folder between our mkdir's steps (pathlib's exist_ok re-checks it)
        return -1, file
    except OSError as e:
        why = "permission denied" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else e.strerror
        raise StoreError(
            f"cannot create the writer lock {file}: {why}; writing needs a writable store folder "
            "(copy the store somewhere writable)"
        ) from None


def _read_info(fd: int) -> dict | None:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except (OSError, ValueError):
        return None  # the holder is between taking the lock and writing its name
    return info if isinstance(info, dict) else None


def _held_message(store: str, name: str, info: dict | None) -> str:
    what = "written" if name == "writer" else f"written ({name})"
    if info is None:
        who = "another process (it is just starting)"
    else:
        host = info.get("host")
        where = "" if host == socket.gethostname() else f" on host {host}"
        who = f"pid {info.get('pid')}{where} ({info.get('command')}, since {info.get('since')})"
    return (
        f"{store} is being {what} by {who}; wait for it to finish or stop it, then retry "
        "(a killed writer releases the lock by itself)"
    )
