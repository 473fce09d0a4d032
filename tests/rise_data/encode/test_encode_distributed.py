"""Scale-out encode: the planning math against naive loops, and real torchrun jobs with gloo ranks on CPU.

The torchrun tests launch ``torchrun --standalone --nproc-per-node N -m rise_data.cli encode ...`` as a
subprocess, exactly as a user would, on a small real store whose embedding chunks are 16 rows (so even a
few hundred rows make many chunks to share out). Each is compared with a single-process encode.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.encode.distributed import (
    MARKER_DIR,
    merge_intervals,
    split_ranges,
    todo_intervals,
    work_unit,
)
from rise_data.store import StoreLayout, open_store
from rise_data.store.check import check_store

ROOT = Path(__file__).resolve().parents[3]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
# 16-row embedding chunks for 256-d float16 (8 KiB), small frame chunks: many chunks in a small store
SMALL = StoreLayout(
    frame_chunk_bytes=64 * 64 * 3 * 8, scalar_chunk_rows=64, episode_chunk_rows=4, embedding_chunk_bytes=8192
)

SLOW_PLUGIN = '''
import os
import time

import torch
from rise_data.encode.encoders import make_encoder


def build(weights=None, source="frame"):
    """downsample, slowed (SLOWENC_SLEEP s per batch): time to kill a rank or start a second job mid-run."""
    pause = float(os.environ.get("SLOWENC_SLEEP", "0.15"))
    enc = make_encoder("downsample", source=source)
    inner = enc.model

    class Slow(torch.nn.Module):
        def forward(self, x):
            time.sleep(pause)
            return inner(x)

    enc.model = Slow()
    return enc
'''


# --------------------------------------------------------------------------- planning vs naive loops


def _rows(intervals, total) -> np.ndarray:
    mask = np.zeros(total, bool)
    for a, b in intervals:
        mask[a:b] = True
    return mask


def _random_intervals(rng, total, n):
    return [tuple(sorted(rng.integers(0, total + 1, 2))) for _ in range(n)]


def test_merge_matches_naive_row_sets():
    rng = np.random.default_rng(0)
    for _ in range(300):
        total = int(rng.integers(1, 120))
        ivs = _random_intervals(rng, total, int(rng.integers(0, 6)))
        merged = merge_intervals(ivs)
        assert np.array_equal(_rows(merged, total), _rows(ivs, total))
        assert all(
            b < c for (_, b), (c, _) in zip(merged, merged[1:], strict=False)
        )  # disjoint, not touching


def test_todo_covers_every_missing_row_in_whole_units():
    rng = np.random.default_rng(1)
    for _ in range(300):
        total, unit = int(rng.integers(1, 200)), int(rng.choice([1, 4, 16, 32]))
        done = _random_intervals(rng, total, int(rng.integers(0, 5)))
        todo = todo_intervals(done, total, unit)
        missing, covered = ~_rows(done, total), _rows(todo, total)
        assert not (missing & ~covered).any()  # nothing left out
        for a, b in todo:  # whole units, except the last rows of the store
            assert a % unit == 0 and (b % unit == 0 or b == total)
        # a unit is in todo exactly when it holds a missing row (the naive per-unit loop)
        for u in range(0, total, unit):
            assert covered[u] == missing[u : u + unit].any()


def test_split_is_disjoint_aligned_balanced_and_complete():
    rng = np.random.default_rng(2)
    for _ in range(300):
        total, unit, parts = int(rng.integers(1, 300)), int(rng.choice([1, 8, 16])), int(rng.integers(1, 6))
        todo = todo_intervals(_random_intervals(rng, total, 3), total, unit)
        shares = split_ranges(todo, parts, unit)
        assert len(shares) == parts
        owner = np.full(total, -1)
        for p, ranges in enumerate(shares):
            for a, b in ranges:
                assert a % unit == 0 and (b % unit == 0 or b == total) and a < b
                assert (owner[a:b] == -1).all()  # no row (so no chunk) in two shares
                owner[a:b] = p
        assert np.array_equal(owner >= 0, _rows(todo, total))
        counts = [sum(-(-(b - a) // unit) for a, b in r) for r in shares]
        assert max(counts) - min(counts) <= 1  # blocks shared out evenly
    assert work_unit(16, 64) == 64 and work_unit(2048, 512) == 2048 and work_unit(48, 32) == 96


# --------------------------------------------------------------------------- torchrun jobs


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> str:
    """A real CueMemory store (frames, ~400 rows), 16-row embedding chunks; copy before writing."""
    path = str(tmp_path_factory.mktemp("scale") / "cue.zarr")
    collect(
        CollectConfig(
            "rise/CueMemory-v0", path, episodes=12, num_envs=2, seed=0, progress=False, layout=SMALL
        )
    )
    return path


@pytest.fixture()
def plugin_dir(tmp_path) -> Path:
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "slowenc.py").write_text(SLOW_PLUGIN)
    return d


def _env(extra_path: Path | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra_path or ""), str(ROOT)) if p)
    return env


def _torchrun(n: int, store: str, *args: str, env: dict, quiet: bool = True, **popen) -> subprocess.Popen:
    cmd = [*TORCHRUN, "--nproc-per-node", str(n), "-m", "rise_data.cli", "encode", store]
    cmd += ["--quiet"] if quiet else []
    cmd += ["--threads", "1", *args]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _reference(store: str, tmp_path: Path, **kw) -> np.ndarray:
    """The same encode by one plain process, on a copy of the store."""
    ref = str(tmp_path / "reference.zarr")
    shutil.copytree(store, ref, ignore=shutil.ignore_patterns(".rise"))
    encode(EncodeConfig(store=ref, progress=False, threads=1, **kw))
    return open_store(ref).embedding(kw.get("name") or kw["encoder"])[:]


def _markers(store: str, name: str) -> list[dict]:
    d = Path(store) / "embeddings" / name / MARKER_DIR
    return [json.loads(p.read_text()) for p in sorted(d.glob("*-*.json"))] if d.is_dir() else []


def _wait_for(predicate, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


def _assert_complete(store: str, name: str, ref: np.ndarray) -> None:
    s = open_store(store)
    assert s.embedding_meta(name)["rows_done"] == s.rows
    assert np.array_equal(s.embedding(name)[:], ref)  # bit for bit
    assert not (Path(store) / "embeddings" / name / MARKER_DIR).exists()  # no progress files left
    assert check_store(store) == []


def test_two_gloo_ranks_equal_one_process(small_store, tmp_path):
    """Through the real torchrun: 2 ranks write disjoint chunks, complete, identical to one process."""
    store = str(tmp_path / "s.zarr")
    shutil.copytree(small_store, store)
    code, out = _finish(_torchrun(2, store, "--encoder", "downsample", "--batch-size", "16", env=_env()))
    assert code == 0, out
    assert "Traceback" not in out and "error:" not in out, out  # --quiet prints nothing but errors
    _assert_complete(
        store, "downsample", _reference(small_store, tmp_path, encoder="downsample", batch_size=16)
    )


@pytest.mark.slow
def test_two_ranks_resnet18_bit_identical(small_store, tmp_path):
    """A conv net (ResNet-18, random init) too: the ranks feed the same batches as one process."""
    store = str(tmp_path / "s.zarr")
    shutil.copytree(small_store, store)
    args = ("--encoder", "resnet18", "--weights", "untrained", "--batch-size", "32", "--name", "r")
    code, out = _finish(_torchrun(2, store, *args, env=_env()))
    assert code == 0, out
    ref = _reference(small_store, tmp_path, encoder="resnet18", weights="untrained", batch_size=32, name="r")
    _assert_complete(store, "r", ref)


@pytest.mark.slow
@pytest.mark.parametrize("resume_ranks", [1, 3])
def test_killed_rank_then_resume_with_another_world_size(small_store, tmp_path, plugin_dir, resume_ranks):
    store = str(tmp_path / "s.zarr")
    shutil.copytree(small_store, store)
    env = _env(plugin_dir)
    args = ("--encoder", "slowenc:build", "--batch-size", "16", "--name", "e")
    job = _torchrun(2, store, *args, env=env, start_new_session=True)
    try:
        # rank 1 has marked progress inside its range (not yet at its end): kill that rank's process
        _wait_for(
            lambda: any(m["rank"] == 1 and m["start"] < m["done"] < m["stop"] for m in _markers(store, "e")),
            what="rank 1 to mark progress",
        )
        victim = next(m["pid"] for m in _markers(store, "e") if m["rank"] == 1)
        os.kill(victim, signal.SIGKILL)
        code, out = _finish(job)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert code != 0
    s = open_store(store)
    assert s.embedding_meta("e")["rows_done"] < s.rows  # not marked complete
    problems = check_store(store)
    assert problems and all(p.severity == "warning" and "incomplete" in p.message for p in problems)
    done_before = sum(m["done"] - m["start"] for m in _markers(store, "e"))
    assert done_before > 0

    if resume_ranks == 1:  # plain process, no torchrun
        cmd = [
            sys.executable,
            "-m",
            "rise_data.cli",
            "encode",
            store,
            "--threads",
            "1",
            *args,
        ]  # summary line
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        code, out = res.returncode, res.stdout + res.stderr
    else:
        code, out = _finish(_torchrun(resume_ranks, store, *args, env=env, quiet=False))
    assert code == 0, out
    encoded = int(out.split("+", 1)[1].split(" rows", 1)[0])
    assert encoded <= s.rows - done_before + 16 * 3  # finished rows were not redone (a chunk per gap at most)
    ref = _reference(small_store, tmp_path, encoder="downsample", batch_size=16, name="e")
    _assert_complete(store, "e", ref)


@pytest.mark.slow
def test_second_job_on_a_store_being_encoded_is_refused(small_store, tmp_path, plugin_dir):
    store = str(tmp_path / "s.zarr")
    shutil.copytree(small_store, store)
    env = _env(plugin_dir)
    args = ("--encoder", "slowenc:build", "--batch-size", "16", "--name", "e")
    # ~40 s of work per rank: longer than the second job takes to start
    first = _torchrun(2, store, *args, env={**env, "SLOWENC_SLEEP": "3"}, start_new_session=True)
    try:
        _wait_for(lambda: _markers(store, "e"), what="the first job to start")
        # a single process is refused (exit 2, one line naming the holder) ...
        cmd = [sys.executable, "-m", "rise_data.cli", "encode", store, "--quiet", *args]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and "encode e" in res.stdout + res.stderr, res.stdout + res.stderr
        # ... and so is a second torchrun job, on every rank
        code, out = _finish(_torchrun(2, store, *args, env=env))
        assert code != 0
        errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
        assert errors and "encode e" in errors[0] and "pid" in errors[0], out
        assert first.poll() is None, "the first job ended before the second was refused: slow it down"
        code, out = _finish(first)
        assert code == 0, out
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    _assert_complete(
        store, "e", _reference(small_store, tmp_path, encoder="downsample", batch_size=16, name="e")
    )


# --------------------------------------------------------------------------- S3 (moto's server on loopback)


@pytest.mark.slow
def test_two_ranks_encode_an_s3_store(small_store, tmp_path, s3):
    root = Path(small_store)
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".rise" not in p.parts:
            s3.upload_file(str(p), "rise-data", f"cue.zarr/{p.relative_to(root).as_posix()}")
    url = "s3://rise-data/cue.zarr"
    code, out = _finish(_torchrun(2, url, "--encoder", "downsample", "--batch-size", "16", env=_env()))
    assert code == 0, out
    s = open_store(url)
    assert s.embedding_meta("downsample")["rows_done"] == s.rows
    ref = _reference(small_store, tmp_path, encoder="downsample", batch_size=16)
    assert np.array_equal(s.embedding("downsample")[:], ref)
    keys = s3.list_objects_v2(Bucket="rise-data", Prefix="cue.zarr/embeddings/downsample/")["Contents"]
    assert not [k["Key"] for k in keys if MARKER_DIR in k["Key"]]  # progress objects removed at completion


# --------------------------------------------------------------------------- collect at scale: shards + merge


def test_collect_shards_in_parallel_then_merge(tmp_path):
    """N collect processes (distinct seeds) into per-worker stores, then one merge keeps every shard's provenance."""
    shards = [str(tmp_path / f"shard-{i}.zarr") for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rise_data.cli", "collect", "rise/CueMemory-v0", path, "--episodes", "4"]
            + ["--num-envs", "1", "--seed", str(100 + i), "--quiet"],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i, path in enumerate(shards)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    merged = str(tmp_path / "all.zarr")
    res = subprocess.run(
        [sys.executable, "-m", "rise_data.cli", "merge", *shards, "-o", merged],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    m, parts = open_store(merged), [open_store(p) for p in shards]
    assert m.rows == sum(p.rows for p in parts) and m.num_episodes == 8
    entry = m.meta["history"][-1]
    assert entry["command"] == "merge" and [s["path"] for s in entry["sources"]] == shards
    seeds = [h["config"]["seed"] for h in m.meta["history"] if h["command"] == "collect"]
    assert sorted(seeds) == [100, 101]  # every shard's collect is in the merged history
    assert check_store(merged) == []
