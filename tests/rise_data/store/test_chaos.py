"""Chaos: real `rise-data` processes killed with SIGKILL at seeded random moments, and two writers at once.

After every kill: `check` finds no error, every episode committed before the kill is still there bit for
bit, the lock is free, and a rerun appends (collect) or resumes (encode) to a store whose array shapes
equal its committed rows.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import requires

from rise_data.store import StoreError, open_store
from rise_data.store.check import check_store
from rise_data.store.lock import LockHeld, holder, store_lock

RISE_DATA = str(Path(sys.executable).parent / "rise-data")
pytestmark = requires("minigrid")
ENV = "minigrid:MiniGrid-Empty-5x5-v0"  # small image frames, episodes of varying length


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [RISE_DATA, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def committed(path: str) -> list[str]:
    """One digest per committed episode: its rows of every step array plus its index entries."""
    s = open_store(path)
    names = [n for n in ("obs", "frame", "action", "reward", "terminated", "truncated") if s.has_array(n)]
    arrays = {n: s.read(n) for n in names}
    ep = s.episodes()
    out = []
    for k in range(s.num_episodes):
        a, b = int(ep["start"][k]), int(ep["start"][k] + ep["length"][k] + 1)
        h = hashlib.sha256(f"{a} {b} {ep['return'][k]!r} {ep['env_index'][k]}".encode())
        for n in names:
            h.update(np.ascontiguousarray(arrays[n][a:b]).tobytes())
        out.append(h.hexdigest())
    return out


def wait_for(pred, proc: subprocess.Popen, timeout: float = 180, what: str = "") -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if pred():
                return
        except StoreError:
            pass  # not created yet
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {what}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_sound(path: str, before: list[str]) -> list[str]:
    """check finds no error, committed episodes are kept bit for bit; returns the episodes now."""
    errors = [p for p in check_store(path) if p.severity == "error"]
    assert not errors, errors
    now = committed(path)
    assert now[: len(before)] == before, "a committed episode was lost or changed"
    assert holder(path) is None, "a killed writer left its lock held"
    return now


def assert_shapes_equal_rows(path: str) -> None:
    s = open_store(path)
    for name in ("obs", "frame", "action", "is_last"):
        if s.has_array(name):
            assert s.array(name).shape[0] == s.rows, name
    for name in s.embedding_names():
        assert s.embedding(name).shape[0] == s.rows


def kill_collect_at(path: str, rng: np.random.Generator, env: str = ENV, envs: int = 3) -> None:
    """Collect until it committed something, then SIGKILL it a seeded random moment later and check."""
    seed = int(rng.integers(1000))
    proc = start(
        "collect", env, path, "--steps", "1000000", "--num-envs", str(envs), "--seed", str(seed), "--quiet"
    )
    wait_for(lambda: open_store(path).num_episodes > 0, proc, what="a committed episode")
    before = committed(path)
    time.sleep(float(rng.uniform(0.0, 2.0)))
    proc.kill()
    proc.communicate(timeout=60)  # closes the pipes too
    assert proc.returncode == -signal.SIGKILL
    assert_sound(path, before)


def test_sigkill_collect_then_rerun_appends(tmp_path):
    path = str(tmp_path / "k.zarr")
    kill_collect_at(path, np.random.default_rng(12))
    before = committed(path)
    done = subprocess.run(
        [RISE_DATA, "collect", ENV, path, "--steps", "60", "--num-envs", "2", "--seed", "99", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    after = assert_sound(path, before)
    assert len(after) > len(before)
    assert check_store(path) == []  # the rerun trimmed the crash tail: not even a warning
    assert_shapes_equal_rows(path)


def test_two_collects_one_store(tmp_path):
    """The second writer exits 2 with one line naming the first; the first's episodes all land."""
    path = str(tmp_path / "two.zarr")
    first = start(
        "collect", ENV, path, "--steps", "1000000", "--num-envs", "2"
    )  # not quiet: prints its summary
    wait_for(lambda: holder(path) is not None, first, what="the first writer's lock")
    second = subprocess.run(
        [RISE_DATA, "collect", ENV, path, "--steps", "50", "--seed", "1", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"pid {first.pid}" in lines[0] and "rise-data collect" in lines[0] and "wait" in lines[0]
    wait_for(lambda: open_store(path).num_episodes > 0, first, what="a committed episode")
    first.send_signal(signal.SIGTERM)  # graceful: running episodes are cut, committed, exit 0
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    s = open_store(path)
    assert f"total {s.rows} rows, {s.num_episodes} episodes" in out  # exactly what the first wrote
    hist = [h for h in s.meta["history"] if h["command"] == "collect"]
    assert len(hist) == 1 and hist[0]["interrupted"] and hist[0]["end_row"] == s.rows
    assert check_store(path) == []


@pytest.mark.slow
@pytest.mark.parametrize("env", [ENV, "ALE/Pong-v5"])
def test_sigkill_collect_repeatedly(tmp_path, env):
    """Five seeded kills in a row on one store (each after something was committed), then a clean rerun."""
    rng = np.random.default_rng(2024)
    path = str(tmp_path / "many.zarr")
    for _ in range(5):
        kill_collect_at(path, rng, env=env, envs=2)
    before = committed(path)
    done = subprocess.run(
        [RISE_DATA, "collect", env, path, "--steps", "30", "--num-envs", "2", "--seed", "7", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert_sound(path, before)
    assert check_store(path) == [] and len(committed(path)) > len(before)
    assert_shapes_equal_rows(path)


@pytest.mark.slow
def test_sigkill_encode_then_resume_gives_the_same_embeddings(tmp_path):
    """encode killed at seeded random moments: rows_done never covers a wrong row, and resuming ends equal
    to one uninterrupted encode; a second writer meanwhile is refused."""
    path, ref = str(tmp_path / "e.zarr"), str(tmp_path / "ref.zarr")
    for p in (path, ref):
        subprocess.run(
            [RISE_DATA, "collect", ENV, p, "--steps", "12000", "--num-envs", "4", "--quiet"],
            check=True,
            timeout=600,
        )
    subprocess.run([RISE_DATA, "encode", ref, "--encoder", "downsample", "--quiet"], check=True, timeout=600)
    want = open_store(ref).embedding("downsample")[:]
    episodes = committed(path)
    rng = np.random.default_rng(5)
    partial = False  # a kill left the embeddings unfinished
    for _ in range(3):
        proc = start("encode", path, "--encoder", "downsample", "--batch-size", "32", "--quiet")
        while holder(path) is None and proc.poll() is None:
            time.sleep(0.02)
        if proc.poll() is not None:  # finished before we could kill it (a resume with little left)
            assert proc.returncode == 0, proc.stderr.read()
            break
        with pytest.raises(LockHeld, match=f"pid {proc.pid}"), store_lock(path, "a second writer"):
            pass
        time.sleep(float(rng.uniform(0.0, 0.3)))  # mid-run even on an idle box (12k rows take seconds)
        proc.kill()
        proc.communicate(timeout=60)
        assert_sound(path, episodes)
        s = open_store(path)
        done = int(s.embedding_meta("downsample")["rows_done"])
        assert done <= s.rows
        assert np.array_equal(s.embedding("downsample")[:done], want[:done])
        partial = partial or done < s.rows
    assert partial
    subprocess.run([RISE_DATA, "encode", path, "--encoder", "downsample", "--quiet"], check=True, timeout=600)
    s = open_store(path)
    assert s.embedding_meta("downsample")["rows_done"] == s.rows
    assert np.array_equal(s.embedding("downsample")[:], want)
    assert check_store(path) == []
