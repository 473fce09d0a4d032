"""Replay from an offline store against naive per-row reconstructions: batches, refusals, the obs cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from replay_reference import CUE, check_batch, naive, store_log, windows

from rise_agent.replay import Replay, ReplayConfig, obs_cache_path
from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.store import open_store


@pytest.fixture()
def cache(tmp_path) -> str:
    return str(tmp_path / "cache")


@pytest.mark.parametrize(
    "cfg,win",
    [
        (ReplayConfig(n_step=3, prioritized=False), windows(8)),
        (ReplayConfig(n_step=5, prioritized=False, reward_clip=0.5), windows(40, 2)),
        (ReplayConfig(n_step=1, prioritized=False, reward_clip=None), windows(0)),
    ],
)
def test_offline_batches_match_naive(cue_replay_store, cache, cfg, win):
    s = open_store(cue_replay_store)
    assert s.read("terminated").sum() >= 2 and s.read("truncated").sum() >= 2  # both endings present
    emb = "downsample" if win["network"].context_len else None
    rp = Replay.from_store(cue_replay_store, emb, cfg, cache_dir=cache, **win)
    cfg = rp.config  # the user's config with the network's windows added
    assert (
        rp.windows
        == (cfg.frame_stack, cfg.context_len)
        == (win["network"].frame_stack, win["network"].context_len)
    )
    log = store_log(cue_replay_store, emb)
    assert len(rp) == s.rows - s.num_episodes  # every non-last row
    # uniform + batch size = len: the stratified draw takes every sampleable row exactly once
    batch = rp.sample(len(rp), np.random.default_rng(0))
    assert sorted(batch.index.tolist()) == np.flatnonzero(~s.read("is_last")).tolist()
    assert torch.all(batch.weights == 1)
    check_batch(batch, lambda t: naive(log, t, cfg), cfg)
    # the interesting cases really occur: blanks at episode starts, terminal and truncated targets
    d = batch.discount.numpy()
    full = np.isclose(d, cfg.gamma**cfg.n_step)
    assert (d == 0).any() and full.any()  # terminal, n steps
    assert cfg.n_step == 1 or ((d > 0) & ~full).any()  # truncated with m < n
    # episode-start rows are in: their whole stack is the first frame (BTR's FrameStack padding)
    assert (batch.frames == batch.frames[:, -1:]).all(dim=(1, 2, 3)).any()
    r = batch.returns.numpy()
    clip = cfg.reward_clip or 1.0
    assert np.abs(r).max() == pytest.approx(clip, rel=1e-6)
    # a random stratified batch too
    check_batch(rp.sample(64, np.random.default_rng(1)), lambda t: naive(log, t, cfg), cfg)


def test_offline_pong_frames(pong_store, cache):
    rp = Replay.from_store(pong_store, None, ReplayConfig(prioritized=True), cache_dir=cache, **windows(0))
    cfg = rp.config
    log = store_log(pong_store)
    batch = rp.sample(48, np.random.default_rng(0))
    assert torch.all(batch.weights == 1)  # beta = 0
    check_batch(batch, lambda t: naive(log, t, cfg), cfg)


def test_offline_refusals(cue_replay_store, cache, tmp_path):
    with pytest.raises(ValueError, match="needs embeddings: pass one of .*downsample"):
        Replay.from_store(cue_replay_store, None, ReplayConfig(), cache_dir=cache, **windows(4))
    with pytest.raises(ValueError, match="no embeddings 'resnet18'"):
        Replay.from_store(cue_replay_store, "resnet18", ReplayConfig(), cache_dir=cache, **windows(4))
    with pytest.raises(ValueError, match="rows per env"):
        Replay.from_store(
            cue_replay_store, None, ReplayConfig(capacity=12), num_envs=2, cache_dir=cache, **windows(0)
        )
    with pytest.raises(ValueError, match="frame_stack must be >= 1"):
        Replay.from_store(cue_replay_store, None, ReplayConfig(), cache_dir=cache, **windows(0, 0))
    source = Replay.from_store(
        cue_replay_store, "downsample", ReplayConfig(), cache_dir=cache, **windows(4)
    ).store
    with pytest.raises(ValueError, match=r"opened for windows \(S, K\) = \(4, 4\), not \(4, 8\)"):
        Replay(ReplayConfig(), (84, 84), source.emb.shape[1], store=source, **windows(8))


def test_obs_cache_built_once_reused_and_rebuilt_after_growth(tmp_path, monkeypatch):
    path, cache = str(tmp_path / "s.zarr"), tmp_path / "cache"
    collect(CollectConfig(CUE, path, episodes=2, num_envs=2, progress=False))
    encode(EncodeConfig(store=path, encoder="downsample", progress=False))
    cfg, win = ReplayConfig(prioritized=False), windows(4)

    # a build that dies half-way leaves neither a cache nor a temp file
    import rise_data.store as store_mod

    read = store_mod.Store.read

    def boom(self, name, start=0, stop=None):
        if name == "obs":
            raise RuntimeError("killed")
        return read(self, name, start, stop)

    with monkeypatch.context() as m:
        m.setattr(store_mod.Store, "read", boom)
        with pytest.raises(RuntimeError, match="killed"):
            Replay.from_store(path, "downsample", cfg, cache_dir=cache, **win)
    assert list(cache.iterdir()) == []

    rp = Replay.from_store(path, "downsample", cfg, cache_dir=cache, **win)
    (f1,) = list(cache.iterdir())
    assert f1 == obs_cache_path(open_store(path), cache) and f1.suffix == ".npy"
    np.testing.assert_array_equal(np.load(f1), open_store(path).read("obs"))
    mtime = os.stat(f1).st_mtime_ns
    rp2 = Replay.from_store(path, "downsample", cfg, cache_dir=cache, **win)
    assert os.stat(f1).st_mtime_ns == mtime and list(cache.iterdir()) == [f1]
    assert isinstance(rp2.store.obs, np.memmap)

    # the store grows: embeddings are incomplete (refused), the cache is rebuilt under a new name
    collect(CollectConfig(CUE, path, episodes=2, num_envs=2, seed=1, progress=False))
    with pytest.raises(
        ValueError,
        match=r"incomplete \(\d+ of \d+ rows\); finish with: rise-data encode .* --encoder downsample",
    ):
        Replay.from_store(path, "downsample", cfg, cache_dir=cache, **win)
    encode(EncodeConfig(store=path, encoder="downsample", progress=False))
    rp3 = Replay.from_store(path, "downsample", cfg, cache_dir=cache, **win)
    (f2,) = list(cache.iterdir())  # the old version was removed
    assert f2 != f1
    s = open_store(path)
    np.testing.assert_array_equal(np.load(f2), s.read("obs"))
    assert len(rp3) == s.rows - s.num_episodes and len(rp3) > len(rp)
    log = store_log(path, "downsample")
    check_batch(
        rp3.sample(len(rp3), np.random.default_rng(0)), lambda t: naive(log, t, rp3.config), rp3.config
    )
