"""The writer lock: exclusive across processes, names its holder, released by the OS when the holder dies."""

import os
import signal
import subprocess
import sys
import warnings

import pytest

from rise_data.store import StoreError
from rise_data.store import lock as lock_mod
from rise_data.store.lock import LockHeld, holder, lock_path, store_lock
from rise_data.store.write import is_empty_folder

HOLD = """
import sys, time
from rise_data.store.lock import store_lock
with store_lock(sys.argv[1], "holder-test", name=sys.argv[2]):
    print("held", flush=True)
    time.sleep(60)
"""


def _hold(path, name="writer"):
    """A real second process holding the lock; returns once it holds it."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path), name], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_process_refused_with_holder_then_sigkill_releases(tmp_path):
    store = tmp_path / "s.zarr"
    p = _hold(store)
    try:
        info = holder(store)
        assert info["pid"] == p.pid and info["command"] == "holder-test"
        with pytest.raises(LockHeld) as e, store_lock(store, "second"):
            pass
        msg = str(e.value)
        assert "\n" not in msg and f"pid {p.pid}" in msg and "holder-test" in msg and "retry" in msg
        assert isinstance(e.value, StoreError)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.communicate()  # closes the pipe too
    assert holder(store) is None  # the kernel dropped the dead holder's lock: no stale file to clean
    with store_lock(store, "after-kill") as f:
        assert f == lock_path(store) and holder(store)["command"] == "after-kill"
    assert holder(store) is None


def test_names_are_independent_and_one_process_cannot_take_one_twice(tmp_path):
    store = tmp_path / "s.zarr"
    # the rows writer and one embedding's encoder are separate locks
    with (
        store_lock(store, "a", name="encode-resnet18"),
        store_lock(store, "b"),
        pytest.raises(LockHeld, match=f"pid {os.getpid()}"),
        store_lock(store, "c"),
    ):
        pass
    with pytest.raises(ValueError, match="lock name"):
        lock_path(store, "../escape")


def test_lock_folder_does_not_make_the_store_folder_non_empty_and_goes_on_release(tmp_path):
    store = tmp_path / "new.zarr"
    with store_lock(store, "create"):
        assert (store / ".rise" / "locks" / "writer.lock").is_file()
        assert is_empty_folder(store)
    assert not store.exists()  # made for the lock, still empty: removed again
    store.mkdir()
    (store / "zarr.json").write_text("{}")
    with store_lock(store, "a", name="encode-x"):
        with store_lock(store, "b"):
            pass
        assert (store / ".rise" / "locks" / "encode-x.lock").is_file()  # the other lock keeps the folder
    assert sorted(p.name for p in store.iterdir()) == ["zarr.json"]  # an idle store folder is plain Zarr
    assert not is_empty_folder(store)


COUNT = """
import sys, time
from rise_data.store.lock import LockHeld, store_lock
store, counter, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
done = 0
while done < n:
    try:
        with store_lock(store, "count"):
            value = int(open(counter).read())  # read, pause, write: a lost update if two held it at once
            time.sleep(0.001)
            open(counter, "w").write(str(value + 1))
        done += 1
    except LockHeld:
        time.sleep(0.0005)
"""


def test_mutual_exclusion_while_holders_keep_deleting_the_file(tmp_path):
    """Three processes take and release the lock 40 times each (every release deletes the lock file and its
    folders): an unguarded read-modify-write counter under it never loses an update."""
    store, counter = tmp_path / "s.zarr", tmp_path / "counter"
    store.mkdir()
    counter.write_text("0")
    procs = [
        subprocess.Popen([sys.executable, "-c", COUNT, str(store), str(counter), "40"]) for _ in range(3)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    assert int(counter.read_text()) == 120
    assert list(store.iterdir()) == []


def test_file_and_read_only_folder_are_one_line_errors(tmp_path):
    f = tmp_path / "file.zarr"
    f.write_text("x")
    with pytest.raises(StoreError, match="is a file"), store_lock(f, "x"):
        pass
    ro = tmp_path / "ro.zarr"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write read-only folders (root)")
        with pytest.raises(StoreError, match="writable store folder"), store_lock(ro, "x"):
            pass
    finally:
        ro.chmod(0o755)


def test_remote_warns_once_zip_has_nothing_to_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_mod, "_warned_remote", set())
    with pytest.warns(UserWarning, match="cannot be locked"), store_lock("s3://bucket/a.zarr", "x") as f:
        assert f is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with store_lock("s3://bucket/a.zarr", "x"):
            pass
        with store_lock(tmp_path / "packed.zip", "x") as f:
            assert f is None
