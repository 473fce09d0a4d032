"""The ring in files: a resumed run (checkpoint, kill, SIGKILL) continues with the replay it had."""

from __future__ import annotations

import copy
import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from replay_reference import Driver, check_batch, feed, roundtrip, same, synthetic_steps, windows

from rise_agent.replay import OnlineRing, Replay, ReplayConfig


@pytest.mark.parametrize("mapped", [True, False], ids=["emb-mapped", "emb-mirrored"])
def test_ring_files_resume_gives_identical_samples(tmp_path, monkeypatch, mapped):
    # mirrored: embeddings gathered from a copy and mirrored into the file, the GPU path, run on CPU
    monkeypatch.setattr(OnlineRing, "map_cpu_embeddings", mapped)
    ring = tmp_path / "run" / "replay"
    cfg_f = ReplayConfig(capacity=3 * 60, per_alpha=0.5, per_beta=0.4, ring_dir=str(ring))
    cfg_r = dataclasses.replace(cfg_f, ring_dir=None)
    win = windows(8)
    uninterrupted, files = Replay(cfg_r, (6, 6), 5, 3, **win), Replay(cfg_f, (6, 6), 5, 3, **win)
    assert files.describe()["sources"]["online"]["storage"] == f"files in {ring}"
    rng, data = np.random.default_rng(0), np.random.default_rng(1)
    emb = torch.zeros(3, 5, dtype=torch.float16)
    for r in (uninterrupted, files):
        r.add_first(np.zeros((3, 6, 6), np.uint8), emb)
    feed((uninterrupted, files), synthetic_steps(3, 150, data, max_len=50, cut=0.01), rng, 5)  # wraps
    for i in range(5):  # learning: priorities move
        a, b = uninterrupted.sample(32, np.random.default_rng(i)), files.sample(32, np.random.default_rng(i))
        same(a, b)
        td = np.random.default_rng(i).random(32) * 4
        uninterrupted.update_priorities(a.index, td)
        files.update_priorities(b.index, td)

    sd = roundtrip(files.state_dict())
    size = sum(t.numel() * t.element_size() for t in _tensors(sd))
    assert "rows" not in sd["ring"] and size < 180 * 8 + 200  # leaf weights + a few counters, no rows
    assert {p.name for p in ring.iterdir()} >= {"obs.npy", "emb.npy", "pos.npy", "written.npy", "ring.json"}
    del files  # the process ends right after its checkpoint

    resumed = Replay(cfg_f, (6, 6), 5, 3, **win)
    resumed.load_state_dict(sd)
    assert resumed.online_transitions == uninterrupted.online_transitions
    same(uninterrupted.sample(64, np.random.default_rng(9)), resumed.sample(64, np.random.default_rng(9)))
    obs = data.integers(0, 256, (3, 6, 6), dtype=np.uint8)
    for r in (uninterrupted, resumed):
        r.add_first(obs, emb)
    feed((uninterrupted, resumed), synthetic_steps(3, 70, data, max_len=50), rng, 5)
    same(uninterrupted.sample(64, np.random.default_rng(10)), resumed.sample(64, np.random.default_rng(10)))


def _tensors(sd):
    for v in sd.values():
        if isinstance(v, dict):
            yield from _tensors(v)
        elif isinstance(v, torch.Tensor):
            yield v


@pytest.mark.parametrize("after", [10, 35])
@pytest.mark.parametrize("mapped", [True, False], ids=["emb-mapped", "emb-mirrored"])
def test_ring_files_killed_after_checkpoint_lose_only_overwritten_rows(tmp_path, monkeypatch, after, mapped):
    """Rows written after the checkpoint overwrote its oldest ones: those (and rows whose windows reach
    them) are dropped on load; everything kept reads only checkpoint-era rows; 35 > 40 - 2 - 6 + 1
    overwrites an env's newest rows too, so that env starts over. Mirrored (the GPU path): embeddings
    reach the file only at checkpoints, and the resumed ring is as consistent."""
    monkeypatch.setattr(OnlineRing, "map_cpu_embeddings", mapped)
    cfg = ReplayConfig(capacity=3 * 40, n_step=2, prioritized=False, ring_dir=str(tmp_path))
    d = Driver(Replay(cfg, (6, 6), 4, 3, **windows(6)), 4, seed=0)
    data, rng = np.random.default_rng(1), np.random.default_rng(2)
    steps = synthetic_steps(3, 400, data, max_len=30)
    d.first(np.zeros((3, 6, 6), np.uint8))
    for _ in range(100):
        d.step(rng.integers(0, 4, 3), next(steps))
    sd = roundtrip(d.rp.state_dict())
    logs, valid = copy.deepcopy(d.logs), d.valid()
    for _ in range(after):
        d.step(rng.integers(0, 4, 3), next(steps))
    del d  # killed

    rp = Replay(cfg, (6, 6), 4, 3, **windows(6))
    rp.load_state_dict(sd)
    cfg = rp.config
    d = Driver(rp, 4, seed=3)
    d.logs = logs
    kept = set((np.flatnonzero(rp.ring.ok) + rp.ring.base).tolist())
    assert kept <= valid and len(valid - kept) <= 3 * (after + cfg.lookback - 1)
    if after == 10:
        assert kept and len(valid - kept) > 0
        check_batch(rp.sample(len(kept), rng), d.ref, cfg)  # every kept row once: all read intact rows
    else:
        assert not kept
    d.first(np.zeros((3, 6, 6), np.uint8))
    for i in range(60):  # once the dropped rows are overwritten, the ring is the naive one again
        d.step(rng.integers(0, 4, 3), next(steps))
        if i in (5, 59):
            assert set((np.flatnonzero(rp.ring.ok) + rp.ring.base).tolist()) <= d.valid()
    d.check_all(rng)
    d.check_current()


_KILL_CHILD = """
import sys, time
import numpy as np, torch
from rise_agent.network import NetworkConfig
from rise_agent.replay import Replay, ReplayConfig
from rise_data.envs import Step

def steps(seed):
    rng = np.random.default_rng(seed)
    left, done = rng.integers(1, 60, 3), np.zeros(3, bool)
    while True:
        first = done
        left = np.where(first, rng.integers(1, 60, 3), left - 1)
        term = (left == 0) & ~first
        done = term
        yield (rng.integers(0, 4, 3), rng.normal(size=(3, 4)).astype(np.float16),
               Step(rng.integers(0, 256, (3, 6, 6), dtype=np.uint8), None,
                    rng.normal(size=3).astype(np.float32), term, np.zeros(3, bool), first))

def run(rp, n, gen, pause=0.0):
    for _ in range(n):
        a, e, st = next(gen)
        rp.add(a, st, torch.from_numpy(e))
        time.sleep(pause)

if __name__ == "__main__":
    ring, ckpt, ready = sys.argv[1:4]
    cfg = ReplayConfig(capacity=3 * 200, prioritized=False, ring_dir=ring)
    rp = Replay(cfg, (6, 6), 4, 3, network=NetworkConfig(n_actions=1, context_len=6, frame_stack=4))
    rp.add_first(np.zeros((3, 6, 6), np.uint8), torch.zeros(3, 4))
    gen = steps(7)
    run(rp, 300, gen)
    torch.save(rp.state_dict(), ckpt)
    open(ready, "w").close()
    run(rp, 150, gen, pause=0.002)  # killed somewhere in here, maybe mid-write
"""


def test_ring_files_sigkill_after_checkpoint(tmp_path):
    """A real process killed with SIGKILL while writing after its checkpoint: the resumed replay keeps
    only rows that are exactly the checkpoint's (checked against a naive log of the same data)."""
    child = tmp_path / "child.py"
    child.write_text(_KILL_CHILD)
    ring, ckpt, ready = tmp_path / "ring", tmp_path / "ckpt.pt", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(child), str(ring), str(ckpt), str(ready)], env=env)
    deadline = time.time() + 60
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert ready.exists(), "the child never reached its checkpoint"
    time.sleep(np.random.default_rng().uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL

    ns: dict = {}
    exec(compile(_KILL_CHILD, str(child), "exec"), ns)  # the child's data, replayed into a naive log
    cfg = ReplayConfig(capacity=3 * 200, prioritized=False)
    d = Driver(Replay(cfg, (6, 6), 4, 3, **windows(6)), 4, seed=0)
    d.first(np.zeros((3, 6, 6), np.uint8))
    gen = ns["steps"](7)
    for _ in range(300):
        a, e, st = next(gen)
        d.emb = lambda e=e: torch.from_numpy(e)
        d.step(a, st)
    valid = d.valid()

    rp = Replay(dataclasses.replace(cfg, ring_dir=str(ring)), (6, 6), 4, 3, **windows(6))
    rp.load_state_dict(torch.load(ckpt, weights_only=True))
    cfg = rp.config
    kept = set((np.flatnonzero(rp.ring.ok) + rp.ring.base).tolist())
    assert kept and kept <= valid and len(valid - kept) <= 3 * (150 + cfg.lookback)
    d.rp = rp
    check_batch(rp.sample(len(kept), np.random.default_rng(0)), d.ref, cfg)  # each kept row once


def test_ring_files_refuse_a_state_that_is_not_theirs(tmp_path):
    cfg, win = ReplayConfig(capacity=3 * 40, ring_dir=str(tmp_path / "a")), windows(4)
    z = np.zeros((3, 6, 6), np.uint8)
    e = torch.zeros(3, 2)
    rp = Replay(cfg, (6, 6), 2, 3, **win)
    rp.add_first(z, e)
    sd = roundtrip(rp.state_dict())
    with pytest.raises(RuntimeError, match="before adding any rows"):
        rp.load_state_dict(sd)
    with pytest.raises(ValueError, match="keeps its rows in ring files"):
        Replay(dataclasses.replace(cfg, ring_dir=None), (6, 6), 2, 3, **win).load_state_dict(sd)
    with pytest.raises(ValueError, match="does not belong to the ring files"):
        Replay(dataclasses.replace(cfg, ring_dir=str(tmp_path / "b")), (6, 6), 2, 3, **win).load_state_dict(
            sd
        )
    with pytest.raises(ValueError, match="3 envs x 40 rows"):
        Replay(dataclasses.replace(cfg, capacity=3 * 50), (6, 6), 2, 3, **win).load_state_dict(sd)
    for other in (windows(5), windows(4, 2)):  # the run's own ring files, other network windows
        with pytest.raises(ValueError, match=r"written for windows \(S, K\) = \(4, 4\)"):
            Replay(cfg, (6, 6), 2, 3, **other).load_state_dict(sd)
    del rp
    fresh = Replay(
        cfg, (6, 6), 2, 3, **win
    )  # a fresh run in the same folder: its first write starts a new ring
    fresh.add_first(z, e)
    with pytest.raises(ValueError, match="does not belong to the ring files"):
        Replay(cfg, (6, 6), 2, 3, **win).load_state_dict(sd)


def test_device_embeddings_reach_the_ring_file_at_checkpoints_only(tmp_path, monkeypatch):
    """The mirrored embeddings file (GPU path, run on CPU) is not written per step: it holds the rows of
    the last checkpoint until the next state_dict, which writes exactly the rows added since."""
    monkeypatch.setattr(OnlineRing, "map_cpu_embeddings", False)
    cfg = ReplayConfig(capacity=3 * 40, prioritized=False, ring_dir=str(tmp_path))
    d = Driver(Replay(cfg, (6, 6), 4, 3, **windows(6)), 4, seed=0)
    steps = synthetic_steps(3, 200, np.random.default_rng(1), max_len=30)
    d.first(np.zeros((3, 6, 6), np.uint8))
    on_disk = lambda: np.load(tmp_path / "emb.npy")  # noqa: E731
    for _ in range(20):
        d.step(np.zeros(3), next(steps))
    assert not on_disk().any()
    d.rp.state_dict()
    want = d.rp.ring.emb.numpy().copy()
    np.testing.assert_array_equal(on_disk(), want)
    for _ in range(50):  # wraps
        d.step(np.zeros(3), next(steps))
    np.testing.assert_array_equal(on_disk(), want)  # still the checkpoint's rows
    d.rp.state_dict()
    np.testing.assert_array_equal(on_disk(), d.rp.ring.emb.numpy())
