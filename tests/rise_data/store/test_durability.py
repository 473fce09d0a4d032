"""Commits survive power loss: the order of fsync/rename calls of a real collect, traced and checked.

Every file written into the store (chunks, arrays' ``zarr.json``) and every directory that gained an entry
must be fsynced before the next metadata document replaces the old one; a metadata document is written to
a temporary file that is fsynced before the rename, and the root's directory is fsynced after the commit.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from rise_data.store import Durability, StoreError, open_store
from rise_data.store.durable import BACKENDS, local_backend
from rise_data.store.format import LOCK_DIR


class Trace:
    """Records os.fsync (fd mapped back to its path), os.replace and os.mkdir, in call order."""

    def __init__(self, monkeypatch):
        self.events: list[tuple[str, Path]] = []
        real = {name: getattr(os, name) for name in ("fsync", "replace", "mkdir")}

        def fsync(fd):
            self.events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))
            return real["fsync"](fd)

        def replace(src, dst, **kw):
            real["replace"](src, dst, **kw)
            self.events.append(("replace", Path(os.path.abspath(dst)), Path(os.path.abspath(src))))

        def mkdir(path, *a, **kw):
            real["mkdir"](path, *a, **kw)
            self.events.append(("mkdir", Path(os.path.abspath(path))))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "mkdir", mkdir)


def check_commit_order(events: list, root: Path) -> dict:
    """Assert the durable commit order over a trace of one store's writes; returns what it counted.

    Before any ``zarr.json`` replace: every file replaced and every directory made in the store since the
    last one, and the directories holding them, fsynced after that write. The ``zarr.json`` itself: its
    temporary file fsynced before the replace; the root's: the root directory fsynced after it.
    """
    root = root.absolute()

    def inside(p: Path) -> bool:
        return (p == root or root in p.parents) and root / LOCK_DIR not in (p, *p.parents)

    unsynced: dict[Path, int] = {}  # path -> event index of the write that left it unsynced
    synced_since: dict[Path, int] = {}  # path -> index of its last fsync
    commits, chunk_files, root_dir_open = 0, 0, False
    for i, (op, path, *src) in enumerate(events):
        if op == "fsync":
            synced_since[path] = i
            unsynced.pop(path, None)
            if path == root:
                root_dir_open = False
            continue
        if not inside(path):
            continue
        if op == "mkdir":
            unsynced.setdefault(path, i)
            unsynced.setdefault(path.parent, i)
            continue
        if path.name == "zarr.json":
            assert not unsynced, f"{path} replaced before fsync of {sorted(map(str, unsynced))[:5]}"
            assert synced_since.get(src[0], -1) >= 0, f"{path}'s temporary file was not fsynced"
            assert not root_dir_open, "the root directory was not fsynced after the last commit"
            if path == root / "zarr.json":
                commits += 1
                root_dir_open = True
            unsynced[path.parent] = i
            continue
        chunk_files += path.name.startswith("c.") or "/c/" in str(path)  # flat or nested chunk keys
        unsynced[path] = i
        unsynced.setdefault(path.parent, i)
    assert not root_dir_open, "the root directory was not fsynced after the last commit"
    return {"commits": commits, "chunk_files": chunk_files}


def collect_traced(tmp_path: Path, monkeypatch, durability: str) -> tuple[Trace, Path]:
    from rise_data.collect import CollectConfig, collect

    store = tmp_path / "pong.zarr"
    trace = Trace(monkeypatch)
    config = CollectConfig(
        "ALE/Pong-v5", str(store), steps=300, num_envs=2, durability=durability, progress=False
    )
    collect(config)
    collect(dataclasses.replace(config, seed=1))  # an append to an existing store
    return trace, store


def test_collect_commits_fsync_every_chunk_and_directory_before_the_metadata(tmp_path, monkeypatch):
    trace, store = collect_traced(tmp_path, monkeypatch, "safe")
    counted = check_commit_order(trace.events, store)
    # two collects: each logs its config and commits its episodes (at least one each)
    assert counted["commits"] >= 4 and counted["chunk_files"] >= 20, counted
    s = open_store(store)
    assert s.rows == len(s.read("obs")) and s.num_episodes >= 2


def test_fast_durability_skips_fsync_and_the_order_check_catches_it(tmp_path, monkeypatch):
    trace, store = collect_traced(tmp_path, monkeypatch, "fast")
    assert not [e for e in trace.events if e[0] == "fsync" and store in e[1].parents]
    with pytest.raises(AssertionError, match="before fsync|not fsynced"):
        check_commit_order(trace.events, store)
    assert open_store(store).rows > 0


def test_encode_rows_done_is_a_durable_commit_of_its_chunks(tmp_path, monkeypatch):
    """An embeddings array's ``rows_done`` (its zarr.json) comes after its chunks are on disk."""
    from rise_data.collect import CollectConfig, collect
    from rise_data.encode import EncodeConfig, encode

    store = tmp_path / "pong.zarr"
    collect(CollectConfig("ALE/Pong-v5", str(store), steps=200, num_envs=2, frames=False, progress=False))
    trace = Trace(monkeypatch)
    encode(EncodeConfig(store=str(store), encoder="downsample", progress=False))
    check_commit_order(trace.events, store)
    s = open_store(store)
    name = s.embedding_names()[0]
    assert s.embedding_meta(name)["rows_done"] == s.rows
    assert np.isfinite(s.read(f"embeddings/{name}").astype(np.float32)).all()


def test_durability_names_are_declared_once():
    assert set(BACKENDS) == set(get_args(Durability))
    with pytest.raises(StoreError, match="durability must be one of safe, fast"):
        local_backend("x.zarr", "slow")


def test_cli_durability_option(tmp_path):
    from typer.testing import CliRunner

    from rise_data.cli import app

    store = str(tmp_path / "s.zarr")
    args = ["collect", "ALE/Pong-v5", store, "--steps", "64", "--num-envs", "2", "--no-frames", "-q"]
    res = CliRunner().invoke(app, [*args, "--durability", "fast"])
    assert res.exit_code == 0, res.output
    assert open_store(store).meta["history"][-1]["config"]["durability"] == "fast"
    res = CliRunner().invoke(app, [*args, "--durability", "slow"])
    assert res.exit_code == 2 and "safe" in res.output and "fast" in res.output, res.output


def test_a_forked_child_commits_durably(tmp_path):
    """The fsync pool is per process: a child forked after the parent used it still flushes."""
    import multiprocessing

    from rise_data.store.write import create_store

    env = {"id": "test", "obs_shape": [8, 8]}
    parent = create_store(tmp_path / "a.zarr", env, (8, 8), None)
    parent.log_write("parent", {})  # the parent's pool has run
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_commit, args=(str(tmp_path / "b.zarr"),))
    child.start()
    child.join(60)
    if child.exitcode is None:  # hung: a pool whose threads did not survive the fork
        child.kill()
    assert child.exitcode == 0
    assert open_store(tmp_path / "b.zarr").meta["history"][-1]["command"] == "child"


def _child_commit(path: str) -> None:
    from rise_data.store.write import create_store

    create_store(path, {"id": "test", "obs_shape": [8, 8]}, (8, 8), None).log_write("child", {})
