"""Prefetch and frames on the device give the eager replay's batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from replay_reference import (
    Driver,
    check_batch,
    feed,
    newest_windows,
    roundtrip,
    same,
    synthetic_steps,
    windows,
)

from rise_agent.replay import Replay, ReplayConfig


@pytest.fixture()
def cache(tmp_path) -> str:
    return str(tmp_path / "cache")


@pytest.mark.parametrize("prioritized", [False, True], ids=["uniform", "per"])
def test_prefetch_equals_eager_with_priorities_one_step_late(cue_replay_store, cache, prioritized):
    """prefetch draws in the caller's thread in the same order: uniform batches equal the eager ones; with
    PER they equal an eager replay whose priority updates land one sample late (the stale-by-one rule)."""
    cfg = ReplayConfig(prioritized=prioritized, per_alpha=0.6, per_beta=0.4)
    win = windows(8)
    eager = Replay.from_store(cue_replay_store, "downsample", cfg, cache_dir=cache, **win)
    pre = Replay.from_store(
        cue_replay_store, "downsample", dataclasses.replace(cfg, prefetch=True), cache_dir=cache, **win
    )
    rng_e, rng_p = np.random.default_rng(0), np.random.default_rng(0)
    td = [np.random.default_rng(100 + i).random(16) * 5 for i in range(8)]
    ref = [eager.sample(16, rng_e)]
    for i in range(8):
        ref.append(eager.sample(16, rng_e))  # drawn before update i: what prefetch draws during step i
        b = pre.sample(16, rng_p)
        same(b, ref[i])
        eager.update_priorities(ref[i].index, td[i])
        pre.update_priorities(b.index, td[i])
    assert pre._pending is not None


def test_prefetch_with_online_writes_gathers_before_each_write():
    """A batch prefetched before add() is gathered before the write touches the ring: every field equals
    the naive reconstruction (rows do not wrap here, so later writes leave a drawn row's data alone)."""
    cfg = ReplayConfig(capacity=3 * 400, n_step=3, prioritized=False, prefetch=True)
    rp = Replay(cfg, obs_shape=(6, 6), embed_dim=5, num_envs=3, **windows(8))
    d = Driver(rp, 5, seed=4)
    rng = np.random.default_rng(4)
    d.first(rng.integers(0, 256, (3, 6, 6), dtype=np.uint8))
    batches = []
    for i, step in enumerate(synthetic_steps(3, 300, rng, max_len=60)):
        d.step(rng.integers(0, 6, 3), step)
        if i >= 20:
            batches.append(rp.sample(24, rng))
    for b in batches[::25]:
        check_batch(b, d.ref, rp.config)


@pytest.mark.parametrize("files", [False, True], ids=["ram", "ring-files"])
def test_obs_on_device_gives_the_eager_batches_and_resumes(tmp_path, files):
    """ReplayConfig.obs_on_device (the ring's frames as a device tensor; CPU tensor here) samples the same
    batches as the numpy ring, the same current frames, and a checkpoint restores it (files: mirrored)."""
    cfg = ReplayConfig(capacity=3 * 60, per_alpha=0.5, ring_dir=str(tmp_path / "r") if files else None)
    dev_cfg = dataclasses.replace(cfg, obs_on_device=True, ring_dir=str(tmp_path / "d") if files else None)
    win = windows(6)
    host, dev = Replay(cfg, (6, 6), 5, 3, **win), Replay(dev_cfg, (6, 6), 5, 3, **win)
    assert isinstance(dev.ring.obs, torch.Tensor) and not isinstance(host.ring.obs, torch.Tensor)
    rng, data = np.random.default_rng(0), np.random.default_rng(1)
    for r in (host, dev):
        r.add_first(np.zeros((3, 6, 6), np.uint8), torch.zeros(3, 5, dtype=torch.float16))
    feed((host, dev), synthetic_steps(3, 150, data, max_len=50), rng, 5)  # wraps
    for i in range(3):
        a, b = host.sample(32, np.random.default_rng(i)), dev.sample(32, np.random.default_rng(i))
        same(a, b)
        host.update_priorities(a.index, np.arange(32.0))
        dev.update_priorities(b.index, np.arange(32.0))
    assert torch.equal(newest_windows(host)[0], newest_windows(dev)[0])
    sd = roundtrip(dev.state_dict())
    resumed = Replay(dev_cfg, (6, 6), 5, 3, **win)
    resumed.load_state_dict(sd)
    same(host.sample(64, np.random.default_rng(9)), resumed.sample(64, np.random.default_rng(9)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("prefetch", [False, True])
def test_cuda_ring_paths_equal_the_host_ring(prefetch):
    """On CUDA: frames on the device, pinned non_blocking uploads and prefetch give the host ring's batches."""
    cfg = ReplayConfig(capacity=3 * 60, prioritized=False)
    fast = dataclasses.replace(cfg, obs_on_device=True, prefetch=prefetch)
    host, dev = (
        Replay(cfg, (6, 6), 5, 3, "cuda", **windows(6)),
        Replay(fast, (6, 6), 5, 3, "cuda", **windows(6)),
    )
    rng, data = np.random.default_rng(0), np.random.default_rng(1)
    for r in (host, dev):
        r.add_first(np.zeros((3, 6, 6), np.uint8), torch.zeros(3, 5, dtype=torch.float16))
    feed((host, dev), synthetic_steps(3, 150, data, max_len=50), rng, 5)
    ra, rb = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(3):
        same(host.sample(32, ra), dev.sample(32, rb))
