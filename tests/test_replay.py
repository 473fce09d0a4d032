"""Replay against naive per-index reconstructions: offline stores, the online ring (wrap-around), PER."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from rise_agent.network import NetworkConfig
from rise_agent.replay import (
    Mixer,
    OnlineRing,
    PrioritizedSampler,
    Replay,
    ReplayConfig,
    UniformSampler,
    obs_cache_path,
    split_batch,
)
from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.envs import Step, env_spec, make_env
from rise_data.store import open_store

CUE = "rise/CueMemory-v0"


def windows(k: int, s: int = 4) -> dict:
    """The network config that owns the windows (K, S), as the keyword argument Replay takes it in."""
    return {"network": NetworkConfig(n_actions=1, context_len=k, frame_stack=s)}


# -- naive reference ------------------------------------------------------------------------------
class Log:
    """Linear rows (a store, or one env's unwrapped history) in plain Python lists."""

    def __init__(self):
        self.obs, self.emb, self.action, self.reward = [], [], [], []
        self.is_first, self.is_last, self.terminated = [], [], []

    def append(self, obs, emb, first, last=False, term=False):
        self.obs.append(np.array(obs))
        self.emb.append(None if emb is None else np.array(emb, np.float16))
        self.action.append(0)
        self.reward.append(0.0)
        self.is_first.append(bool(first))
        self.is_last.append(bool(last))
        self.terminated.append(bool(term and last))

    @property
    def open(self) -> bool:
        return bool(self.obs) and not self.is_last[-1]

    def close(self):  # a reset without a done: the episode ends truncated at its newest row
        self.is_last[-1] = True
        self.terminated[-1] = False

    def start(self, u):
        while not self.is_first[u]:
            u -= 1
        return u


def store_log(path, embedding=None) -> Log:
    s = open_store(path)
    log = Log()
    emb = s.embedding(embedding)[: s.rows] if embedding else [None] * s.rows
    for name in ("obs", "action", "reward", "is_first", "is_last", "terminated"):
        setattr(log, name, list(s.read(name)))
    log.emb = list(emb)
    return log


def naive(log: Log, t: int, cfg) -> dict:
    """One transition from row t, by walking the rows one at a time (``cfg``: a replay's ``config``)."""
    start = log.start(t)
    S, K, n, g = cfg.frame_stack, cfg.context_len, cfg.n_step, cfg.gamma
    clip = (lambda r: max(-cfg.reward_clip, min(cfg.reward_clip, r))) if cfg.reward_clip else (lambda r: r)

    def stack(r):  # BTR's FrameStack: slots before the episode start repeat its first frame
        return np.stack([log.obs[max(q, start)] for q in range(r - S + 1, r + 1)])

    def window(r):
        if not K:
            return None, None
        blank = np.zeros_like(log.emb[r])
        rows = range(r - K + 1, r + 1)
        return np.stack([log.emb[q] if q >= start else blank for q in rows]), np.array(
            [q >= start for q in rows]
        )

    assert not log.is_last[t]
    ret, m = 0.0, 0
    while m < n and not log.is_last[t + m]:
        ret += g**m * clip(float(log.reward[t + m]))
        m += 1
    nxt = t + m
    ctx, mask = window(t)
    nctx, nmask = window(nxt)
    return {
        "frames": stack(t),
        "context": ctx,
        "mask": mask,
        "action": int(log.action[t]),
        "returns": ret,
        "discount": 0.0 if log.terminated[nxt] else g**m,
        "next_frames": stack(nxt),
        "next_context": nctx,
        "next_mask": nmask,
        "m": m,
    }


def check_batch(batch, ref_of, cfg) -> None:
    """Every field of every sample equals the naive reconstruction of its row."""
    B = len(batch.index)
    assert batch.frames.dtype == torch.uint8 and batch.frames.shape[:2] == (B, cfg.frame_stack)
    assert batch.action.dtype == torch.int64 and batch.returns.dtype == torch.float32
    assert batch.discount.dtype == torch.float32 and batch.weights.dtype == torch.float32
    if cfg.context_len:
        assert batch.context.dtype == torch.float16 and batch.mask.dtype == torch.bool
        assert batch.context.shape[:2] == (B, cfg.context_len)
    else:
        assert batch.context is None and batch.mask is None and batch.next_context is None
    for b in range(B):
        ref = ref_of(int(batch.index[b]))
        np.testing.assert_array_equal(batch.frames[b].numpy(), ref["frames"])
        np.testing.assert_array_equal(batch.next_frames[b].numpy(), ref["next_frames"])
        assert int(batch.action[b]) == ref["action"]
        assert float(batch.returns[b]) == pytest.approx(ref["returns"], abs=1e-5)
        assert float(batch.discount[b]) == pytest.approx(ref["discount"], abs=1e-6)
        if cfg.context_len:
            np.testing.assert_array_equal(batch.context[b].numpy(), ref["context"])
            np.testing.assert_array_equal(batch.mask[b].numpy(), ref["mask"])
            np.testing.assert_array_equal(batch.next_context[b].numpy(), ref["next_context"])
            np.testing.assert_array_equal(batch.next_mask[b].numpy(), ref["next_mask"])


# -- offline block ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cue_store(tmp_path_factory) -> str:
    """A real CueMemory store (33-row episodes, 4 terminated + 2 truncated by --steps) with embeddings."""
    path = str(tmp_path_factory.mktemp("replay") / "cue.zarr")
    collect(CollectConfig(CUE, path, steps=150, num_envs=2, progress=False))
    encode(EncodeConfig(store=path, encoder="downsample", progress=False))
    return path


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
def test_offline_batches_match_naive(cue_store, cache, cfg, win):
    s = open_store(cue_store)
    assert s.read("terminated").sum() >= 2 and s.read("truncated").sum() >= 2  # both endings present
    emb = "downsample" if win["network"].context_len else None
    rp = Replay.from_store(cue_store, emb, cfg, cache_dir=cache, **win)
    cfg = rp.config  # the user's config with the network's windows added
    assert (
        rp.windows
        == (cfg.frame_stack, cfg.context_len)
        == (win["network"].frame_stack, win["network"].context_len)
    )
    log = store_log(cue_store, emb)
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


def test_offline_refusals(cue_store, cache, tmp_path):
    with pytest.raises(ValueError, match="needs embeddings: pass one of .*downsample"):
        Replay.from_store(cue_store, None, ReplayConfig(), cache_dir=cache, **windows(4))
    with pytest.raises(ValueError, match="no embeddings 'resnet18'"):
        Replay.from_store(cue_store, "resnet18", ReplayConfig(), cache_dir=cache, **windows(4))
    with pytest.raises(ValueError, match="rows per env"):
        Replay.from_store(
            cue_store, None, ReplayConfig(capacity=12), num_envs=2, cache_dir=cache, **windows(0)
        )
    with pytest.raises(ValueError, match="frame_stack must be >= 1"):
        Replay.from_store(cue_store, None, ReplayConfig(), cache_dir=cache, **windows(0, 0))
    source = Replay.from_store(cue_store, "downsample", ReplayConfig(), cache_dir=cache, **windows(4)).store
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


# -- online ring -----------------------------------------------------------------------------------
class Driver:
    """Feeds a replay and a naive log with the same steps."""

    def __init__(self, rp: Replay, dim: int, seed: int):
        self.rp, self.dim = rp, dim
        self.rng = np.random.default_rng(seed)
        self.logs = [Log() for _ in range(rp.num_envs)]

    def emb(self):
        if not self.rp.config.context_len:
            return None
        return torch.from_numpy(self.rng.normal(size=(self.rp.num_envs, self.dim)).astype(np.float16))

    def first(self, obs):
        emb = self.emb()
        self.rp.add_first(obs, emb)
        for i, log in enumerate(self.logs):
            if log.open:
                log.close()
            log.append(obs[i], None if emb is None else emb[i].numpy(), True)

    def step(self, actions, step: Step):
        emb = self.emb()
        self.rp.add(actions, step, emb)
        for i, log in enumerate(self.logs):
            first = bool(step.is_first[i])
            if not first:
                log.action[-1], log.reward[-1] = int(actions[i]), float(step.reward[i])
            elif log.open:
                log.close()
            done = bool(step.terminated[i] or step.truncated[i]) and not first
            log.append(step.obs[i], None if emb is None else emb[i].numpy(), first, done, step.terminated[i])

    # -- the naive view of the ring --------------------------------------------------------------
    def locate(self, index: int) -> tuple[int, int]:
        """(env, unwrapped row) of a global online index: the live row in that slot."""
        on = self.rp.ring
        local = index - on.base
        e, slot = divmod(local, on.seg)
        w = len(self.logs[e].obs)
        lo = max(0, w - on.seg)
        u = lo + (slot - lo) % on.seg
        assert u < w
        return e, u

    def valid(self) -> set[int]:
        """Global indices whose transition is complete and reads only rows still in the ring."""
        on, cfg = self.rp.ring, self.rp.config
        out = set()
        for e, log in enumerate(self.logs):
            w = len(log.obs)
            for u in range(max(0, w - on.seg), w):
                if log.is_last[u]:
                    continue
                if not (u + cfg.n_step <= w - 1 or any(log.is_last[u:w])):
                    continue  # the n-step target is not written yet
                lo = u - min(u - log.start(u), cfg.lookback - 1)
                if lo < w - on.seg:
                    continue  # a window reaches a row that has been overwritten
                out.add(on.base + e * on.seg + u % on.seg)
        return out

    def ref(self, index: int) -> dict:
        e, u = self.locate(index)
        return naive(self.logs[e], u, self.rp.config)

    def check_all(self, rng) -> None:
        """The non-zero leaves are exactly the valid transitions; a len-sized sample (every valid row
        exactly once when uniform) equals the naive reconstruction field by field."""
        want = self.valid()
        on = self.rp.ring
        assert self.rp.online_transitions == len(want)
        assert len(self.rp) == self.rp.store_transitions + len(want)
        assert set((np.flatnonzero(on.sampler.weights() > 0) + on.base).tolist()) == want
        if not want:
            return
        batch = self.rp.sample(len(want), rng)
        if self.rp.config.prioritized:
            assert set(batch.index.tolist()) <= want
        else:
            assert sorted(batch.index.tolist()) == sorted(want)
        check_batch(batch, self.ref, self.rp.config)

    def check_current(self) -> None:
        frames, ctx, mask = newest_windows(self.rp)
        cfg = self.rp.config
        for e, log in enumerate(self.logs):
            u = len(log.obs) - 1
            start = log.start(u)
            ref = np.stack([log.obs[max(q, start)] for q in range(u - cfg.frame_stack + 1, u + 1)])
            np.testing.assert_array_equal(frames[e].numpy(), ref)
            if cfg.context_len:
                rows = range(u - cfg.context_len + 1, u + 1)
                z = np.zeros(self.dim, np.float16)
                np.testing.assert_array_equal(
                    ctx[e].numpy(), np.stack([log.emb[q] if q >= start else z for q in rows])
                )
                np.testing.assert_array_equal(mask[e].numpy(), [q >= start for q in rows])
            else:
                assert ctx is None and mask is None


def newest_windows(rp: Replay):
    """Each env's frame stack and context window at its newest ring row, gathered as batches are."""
    ring, (S, K) = rp.ring, rp.windows
    rows = ring.newest()
    srows, _ = ring.window(rows, S)
    obs = ring.obs.cpu().numpy() if isinstance(ring.obs, torch.Tensor) else ring.obs
    frames = torch.from_numpy(obs[srows])
    if not K:
        return frames, None, None
    crows, mask = ring.window(rows, K)
    return frames, ring.emb[torch.from_numpy(np.where(mask, crows, ring.num_rows))], torch.from_numpy(mask)


def test_online_real_env_with_wraparound():
    env = make_env(env_spec(CUE), num_envs=3)
    cfg = ReplayConfig(capacity=300, n_step=3, prioritized=False, reward_clip=0.5)
    rp = Replay(cfg, obs_shape=env.obs_shape, embed_dim=16, num_envs=3, **windows(8))
    d = Driver(rp, 16, seed=0)
    rng = np.random.default_rng(0)
    d.first(env.reset(seed=0).obs)
    d.check_current()
    for i in range(330):  # 331 rows per env in 100-row segments: three wraps, 33-row episodes across them
        actions = rng.integers(0, env.n_actions, 3)
        d.step(actions, env.step(actions))
        if i % 33 == 0 or i > 320:
            d.check_all(rng)
            d.check_current()
    env.close()
    assert all(log.terminated.count(True) >= 9 for log in d.logs)


def synthetic_steps(num_envs, n, rng, obs_shape=(6, 6), max_len=150, cut=0.0):
    """Next-step-autoreset Steps with random lengths (some longer than a segment), both endings, big
    rewards, and with probability ``cut`` a new episode without a done (an external reset)."""
    left = rng.integers(1, max_len, num_envs)
    done = np.zeros(num_envs, bool)
    for _ in range(n):
        first = done | (rng.random(num_envs) < cut)
        left = np.where(first, rng.integers(1, max_len, num_envs), left - 1)
        end = (left == 0) & ~first
        kind = rng.random(num_envs) < 0.5
        term, trunc = end & kind, end & ~kind
        done = term | trunc
        reward = np.where(first, 0.0, rng.normal(size=num_envs) * 2).astype(np.float32)
        obs = rng.integers(0, 256, (num_envs, *obs_shape), dtype=np.uint8)
        yield Step(obs, None, reward, term, trunc, first)


@pytest.mark.parametrize("context_len,n_step,frame_stack", [(8, 3, 4), (0, 1, 4), (12, 5, 2)])
def test_online_synthetic_truncation_resets_and_long_episodes(context_len, n_step, frame_stack):
    cfg = ReplayConfig(capacity=4 * 60, n_step=n_step, prioritized=False)
    rp = Replay(cfg, obs_shape=(6, 6), embed_dim=5, num_envs=4, **windows(context_len, frame_stack))
    d = Driver(rp, 5, seed=1)
    rng = np.random.default_rng(2)
    d.first(rng.integers(0, 256, (4, 6, 6), dtype=np.uint8))
    for i, step in enumerate(synthetic_steps(4, 400, rng, cut=0.01)):
        d.step(rng.integers(0, 6, 4), step)
        if i == 150:  # a reset without a done: open episodes are cut as truncated
            d.first(rng.integers(0, 256, (4, 6, 6), dtype=np.uint8))
            d.first(rng.integers(0, 256, (4, 6, 6), dtype=np.uint8))  # and a 0-action episode
        if i % 9 == 0:
            d.check_all(rng)
            d.check_current()
    logs = d.logs
    assert any(log.terminated.count(True) for log in logs)
    assert any(sum(la and not te for la, te in zip(log.is_last, log.terminated, strict=True)) for log in logs)


def test_online_refusals():
    with pytest.raises(ValueError, match="rows per env"):
        Replay(ReplayConfig(capacity=3 * 80), num_envs=3, **windows(80))
    rp = Replay(ReplayConfig(capacity=300), embed_dim=3, num_envs=3, obs_shape=(6, 6), **windows(4))
    with pytest.raises(ValueError, match="emb of shape"):
        rp.add_first(np.zeros((3, 6, 6), np.uint8), None)
    rp.add_first(np.zeros((3, 6, 6), np.uint8), torch.zeros(3, 3))
    z = np.zeros(3, bool)
    rp.add(
        np.zeros(3), Step(np.zeros((3, 6, 6), np.uint8), None, np.zeros(3), z | True, z, z), torch.zeros(3, 3)
    )
    with pytest.raises(ValueError, match="continued after their episode ended"):
        rp.add(
            np.zeros(3), Step(np.zeros((3, 6, 6), np.uint8), None, np.zeros(3), z, z, z), torch.zeros(3, 3)
        )
    with pytest.raises(ValueError, match="no sampleable"):
        Replay(ReplayConfig(capacity=300), num_envs=3, obs_shape=(6, 6), **windows(0)).sample(
            4, np.random.default_rng()
        )


# -- offline + online, checkpoints, PER ------------------------------------------------------------
def same(a, b) -> None:
    """Two batches are identical, field by field."""
    for k in ("frames", "context", "mask", "action", "returns", "discount", "next_frames", "weights"):
        x, y = getattr(a, k), getattr(b, k)
        assert (x is None and y is None) or torch.equal(x, y), k
    np.testing.assert_array_equal(a.index, b.index)


def roundtrip(sd: dict) -> dict:
    """Through torch.save and a weights_only load, as a checkpoint goes."""
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_mixed_sources_and_state_dict_round_trip(cue_store, cache):
    cfg = ReplayConfig(capacity=2 * 100, per_beta=0.4, offline_fraction=0.25)
    D = open_store(cue_store).embedding("downsample").shape[1]
    rp = Replay.from_store(cue_store, "downsample", cfg, num_envs=2, cache_dir=cache, **windows(8))
    base = open_store(cue_store).rows
    d = Driver(rp, D, seed=3)
    rng = np.random.default_rng(3)
    steps = list(synthetic_steps(2, 260, np.random.default_rng(4), obs_shape=(84, 84), max_len=60))
    d.first(np.zeros((2, 84, 84), np.uint8))
    for step in steps[:200]:
        d.step(rng.integers(0, 3, 2), step)
    for _ in range(5):
        b = rp.sample(32, rng)
        rp.update_priorities(b.index, rng.random(32) * 3)

    # store rows come first, online rows after them; each part matches its naive reference
    log = store_log(cue_store, "downsample")
    b = rp.sample(400, rng)
    assert (b.index < base).sum() == 100  # offline_fraction 0.25, exactly
    check_batch(b, lambda t: naive(log, t, rp.config) if t < base else d.ref(t), rp.config)

    sd = roundtrip(rp.state_dict())  # RAM ring: its rows travel in the state
    rp2 = Replay.from_store(cue_store, "downsample", cfg, num_envs=2, cache_dir=cache, **windows(8))
    rp2.load_state_dict(sd)
    assert len(rp2) == len(rp) and rp2.online_transitions == rp.online_transitions
    same(rp.sample(64, np.random.default_rng(9)), rp2.sample(64, np.random.default_rng(9)))
    emb = torch.randn(2, D).half()
    with pytest.raises(RuntimeError, match="add_first"):  # a resume resets the envs first
        rp2.add(np.zeros(2), steps[200], emb)
    for r in (rp, rp2):
        r.add_first(np.zeros((2, 84, 84), np.uint8), emb)
    for step in steps[200:]:  # both keep going identically after the restore
        a = rng.integers(0, 3, 2)
        rp.add(a, step, emb)
        rp2.add(a, step, emb)
    same(rp.sample(64, np.random.default_rng(10)), rp2.sample(64, np.random.default_rng(10)))
    with pytest.raises(ValueError, match="does not fit"):
        Replay(
            dataclasses.replace(cfg, offline_fraction=None), embed_dim=D, num_envs=2, **windows(8)
        ).load_state_dict(sd)
    for other in (windows(6), windows(8, 2)):  # a state of the same store and ring, other windows
        with pytest.raises(ValueError, match=r"written for windows \(S, K\) = \(4, 8\)"):
            Replay.from_store(
                cue_store, "downsample", cfg, num_envs=2, cache_dir=cache, **other
            ).load_state_dict(sd)


# -- samplers ----------------------------------------------------------------------------------------
def test_samplers_against_naive_weights():
    rng = np.random.default_rng(0)
    u, p = UniformSampler(50), PrioritizedSampler(50, alpha=0.5, eps=1e-3)
    naive_u, naive_p = np.zeros(50), np.zeros(50)
    for s in (u, p):
        s.mark(np.array([3, 4]), np.arange(0, 40))
        s.mark(np.array([5, 6, 7]), np.array([7, 45]))  # a row both off and on ends up on
    naive_u[np.r_[0:5, 7:40, 45]] = 1.0
    naive_p[:] = naive_u
    np.testing.assert_array_equal(u.weights(), naive_u)
    rows, prob = u.sample(1000, rng)
    assert set(rows.tolist()) == set(np.flatnonzero(naive_u).tolist()) and np.allclose(
        prob, 1 / naive_u.sum()
    )
    td = rng.normal(size=10) * 3
    p.update(np.arange(10), td)
    u.update(np.arange(10), td)  # uniform: no-op
    naive_p[:10] = (np.abs(td) + 1e-3) ** 0.5
    np.testing.assert_allclose(p.weights(), naive_p)
    np.testing.assert_array_equal(u.weights(), naive_u)
    assert p.max_priority == pytest.approx(max(1.0, naive_p.max()))
    p.mark(np.zeros(0, np.int64), np.array([46]))  # new rows enter at the running max
    naive_p[46] = p.max_priority
    rows, prob = p.sample(64, rng)
    np.testing.assert_allclose(prob, naive_p[rows] / naive_p.sum())
    q = PrioritizedSampler(50, alpha=0.5, eps=1e-3)
    q.load_state_dict(roundtrip(p.state_dict()))
    assert q.max_priority == p.max_priority and np.array_equal(q.weights(), p.weights())


# -- the mixer: offline_fraction means what it says -------------------------------------------------
def test_split_batch_is_nearest_integer_halves_up():
    for B in [1, 2, 3, 7, 64, 255, 256, 257]:
        for f in [*np.linspace(0, 1, 33), 0.25, 1 / 3, 0.5, 0.1]:
            want = min(range(B + 1), key=lambda k: (abs(k - f * B), -k))  # nearest, ties to the larger
            assert split_batch(B, f) == (want, B - want), (B, f)
    assert split_batch(256, 0.25) == (64, 192) and split_batch(3, 0.5) == (2, 1)


def test_mixer_resolves_implied_fractions_and_refuses_impossible_ones():
    assert Mixer.resolve(None, True, False).offline_fraction == 1.0
    assert Mixer.resolve(None, False, True).offline_fraction == 0.0
    assert Mixer.resolve(None, True, True).offline_fraction == 0.5
    assert Mixer.resolve(1.0, True, False).offline_fraction == 1.0
    assert Mixer.resolve(0.0, False, True).offline_fraction == 0.0
    with pytest.raises(ValueError, match="needs an online ring"):
        Mixer.resolve(0.25, True, False)
    with pytest.raises(ValueError, match="needs a store"):
        Mixer.resolve(0.25, False, True)
    with pytest.raises(ValueError, match="needs a store"):
        Replay(ReplayConfig(capacity=300, offline_fraction=0.5), (6, 6), num_envs=3, **windows(0))


@pytest.mark.parametrize("fraction,want", [(0.0, 0), (0.25, 64), (1.0, 256), (None, 128)])
def test_offline_fraction_is_exact_from_the_first_sample(cue_store, cache, fraction, want):
    cfg = ReplayConfig(capacity=2 * 100, n_step=3, offline_fraction=fraction)
    rp = Replay.from_store(cue_store, None, cfg, num_envs=2, cache_dir=cache, **windows(0))
    s = open_store(cue_store)
    base = rp.store.num_rows
    assert rp.online_transitions == 0 and len(rp) == rp.store_transitions == s.rows - s.num_episodes
    rng = np.random.default_rng(0)
    store_weights = rp.store.sampler.weights().copy()
    d = Driver(rp, 0, seed=0)
    d.first(np.zeros((2, 84, 84), np.uint8))
    steps = synthetic_steps(2, 100, np.random.default_rng(1), obs_shape=(84, 84), max_len=80)
    if want < 256:  # the ring must supply rows: refused until it has one, never filled from the store
        with pytest.raises(ValueError, match="online source holds no sampleable"):
            rp.sample(256, rng)
    while rp.online_transitions == 0:
        d.step(np.zeros(2), next(steps))
    assert 1 <= rp.online_transitions == len(d.valid()) <= 2  # each env's first complete 3-step target
    assert len(rp) == rp.store_transitions + rp.online_transitions  # store rows are not online transitions
    for _ in range(10):
        d.step(np.zeros(2), next(steps))
        b = rp.sample(256, rng)
        assert (b.index < base).sum() == want
        rp.update_priorities(b.index, rng.random(256) * 5)
    assert rp.online_transitions == len(d.valid()) > 10
    assert rp.describe(256)["offline_fraction"] == (0.5 if fraction is None else fraction)
    if want == 0:  # never touched: not even a priority update reached the store
        np.testing.assert_array_equal(rp.store.sampler.weights(), store_weights)


def test_priority_updates_land_in_their_source(cue_store, cache):
    cfg = ReplayConfig(capacity=2 * 100, per_alpha=1.0, per_eps=1e-9, offline_fraction=0.5)
    rp = Replay.from_store(cue_store, None, cfg, num_envs=2, cache_dir=cache, **windows(0))
    d = Driver(rp, 0, seed=0)
    d.first(np.zeros((2, 84, 84), np.uint8))
    for step in synthetic_steps(2, 60, np.random.default_rng(1), obs_shape=(84, 84), max_len=80):
        d.step(np.zeros(2), step)
    store_w, ring_w = rp.store.sampler.weights().copy(), rp.ring.sampler.weights().copy()
    b = rp.sample(64, np.random.default_rng(0))
    base = rp.ring.base
    assert base == rp.store.num_rows and (b.index < base).sum() == 32
    td = np.arange(64, dtype=np.float64) + 2.0
    rp.update_priorities(b.index, -td)  # |td|
    prio = {int(i): t for i, t in zip(b.index, td, strict=True)}  # a row drawn twice: the last wins
    for i, t in prio.items():
        if i < base:
            store_w[i] = t + cfg.per_eps
        else:
            ring_w[i - base] = t + cfg.per_eps
    np.testing.assert_allclose(rp.store.sampler.weights(), store_w, rtol=1e-12)
    np.testing.assert_allclose(rp.ring.sampler.weights(), ring_w, rtol=1e-12)
    # new ring rows enter at the ring's own max priority, whatever the store's
    assert rp.ring.sampler.max_priority == max(t for i, t in prio.items() if i >= base) + cfg.per_eps
    rp.update_priorities(np.array([0]), np.array([1000.0]))
    d.step(np.zeros(2), next(synthetic_steps(2, 1, np.random.default_rng(5), obs_shape=(84, 84))))
    new = np.flatnonzero(rp.ring.sampler.weights() != ring_w)
    assert new.size and np.all(rp.ring.sampler.weights()[new] == rp.ring.sampler.max_priority)


# -- the ring in files: a resumed run continues with its replay -------------------------------------
def feed(replays, steps, rng, dim) -> None:
    """The same steps (random actions, embeddings) into every replay."""
    for step in steps:
        a, emb = rng.integers(0, 4, 3), torch.from_numpy(rng.normal(size=(3, dim)).astype(np.float16))
        for r in replays:
            r.add(a, step, emb)


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


def test_describe_names_sources_sizes_and_shares(cue_store, cache):
    cfg = ReplayConfig(capacity=2 * 100, offline_fraction=0.25)
    rp = Replay.from_store(cue_store, None, cfg, num_envs=2, cache_dir=cache, **windows(0))
    d = rp.describe(256)
    s = open_store(cue_store)
    assert d["offline_fraction"] == 0.25 and d["sampler"].startswith("PrioritizedSampler(alpha=0.2")
    assert d["sources"]["store"] == {
        "rows": s.rows,
        "transitions": s.rows - s.num_episodes,
        "share": 0.25,
        "rows_per_batch": 64,
    }
    on = d["sources"]["online"]
    assert (on["capacity"], on["envs"], on["rows_per_env"], on["transitions"]) == (200, 2, 100, 0)
    assert on["share"] == 0.75 and on["rows_per_batch"] == 192 and on["storage"] == "RAM"
    json.dumps(d)  # printable as it is
    only = Replay.from_store(cue_store, None, ReplayConfig(), cache_dir=cache, **windows(0)).describe()
    assert only["offline_fraction"] == 1.0 and list(only["sources"]) == ["store"]


def test_per_frequencies_and_weights(cue_store, cache):
    cfg = ReplayConfig(per_alpha=1.0, per_beta=0.5, per_eps=1e-9)
    rp = Replay.from_store(cue_store, None, cfg, cache_dir=cache, **windows(0))
    rows = np.flatnonzero(~open_store(cue_store).read("is_last"))
    hot = rows[rows % 3 == 0]
    td = np.where(rows % 3 == 0, 4.0, 1.0)
    rp.update_priorities(rows, td)
    p = np.zeros(rows.max() + 2)
    p[rows] = td  # alpha = 1
    rng = np.random.default_rng(0)
    seen = np.concatenate([rp.sample(64, rng).index for _ in range(150)])
    want = p[hot].sum() / p.sum()
    assert abs(np.isin(seen, hot).mean() - want) < 0.02
    # per-row frequencies follow priorities (generous bound per row)
    freq = np.bincount(seen, minlength=p.size)[rows] / seen.size
    np.testing.assert_allclose(freq, p[rows] / p.sum(), atol=0.01)
    b = rp.sample(64, rng)
    w = (len(rp) * p[b.index] / p.sum()) ** -0.5
    np.testing.assert_allclose(b.weights.numpy(), w / w.max(), rtol=1e-5)
    assert float(b.weights.max()) == 1.0


def test_per_online_new_rows_get_max_priority_and_overwritten_rows_stay_out():
    cfg = ReplayConfig(capacity=2 * 40, n_step=2, per_alpha=0.5)
    rp = Replay(cfg, obs_shape=(6, 6), embed_dim=3, num_envs=2, **windows(4))
    d = Driver(rp, 3, seed=5)
    rng = np.random.default_rng(5)
    steps = synthetic_steps(2, 200, rng, max_len=25)
    d.first(np.zeros((2, 6, 6), np.uint8))
    for _ in range(30):
        d.step(np.zeros(2), next(steps))
    b = rp.sample(16, rng)
    rp.update_priorities(b.index, np.full(16, 99.0))
    top = (99.0 + cfg.per_eps) ** 0.5
    np.testing.assert_allclose(rp.ring.sampler.tree[b.index - rp.ring.base], top)
    d.step(np.zeros(2), next(steps))
    newest = [
        rp.ring.slot(np.array([e]), np.array([len(log.obs) - 1 - cfg.n_step]))[0]
        for e, log in enumerate(d.logs)
    ]
    ok = [r for r in newest if rp.ring.ok[r]]
    assert ok and np.allclose(rp.ring.sampler.tree[np.array(ok)], top)
    # a sampled row is overwritten before its priority comes back: it must stay unsampleable
    old = rp.sample(16, rng)
    e, u = d.locate(int(old.index[0]))
    k = (u - (len(d.logs[e].obs) - 1)) % rp.ring.seg or rp.ring.seg
    for _ in range(k):  # until env e's newest row sits in that slot
        d.step(np.zeros(2), next(steps))
    assert int(old.index[0]) not in d.valid()
    gone = np.array(sorted(set(old.index.tolist()) - d.valid()))
    rp.update_priorities(old.index, np.ones(16))
    assert (
        np.all(rp.ring.sampler.tree[gone - rp.ring.base] == 0) and not rp.ring.ok[gone - rp.ring.base].any()
    )
    d.check_all(
        rng
    )  # prioritized: the sampled rows are valid and the non-zero leaves are exactly the valid rows


def test_wrapped_add_touches_only_sampleable_rows_and_the_tree_is_exact():
    """The filtered sum-tree updates of a wrapped ring give the same tree, node for node, as zeroing every
    row a write names (the unfiltered rule), with PER priorities moving; the leaves are the valid rows."""

    def unfiltered(self, off, on):
        none = np.zeros(0, np.int64)
        off_rows, on_rows = np.concatenate([none, *off]), np.concatenate([none, *on])
        self.ok[off_rows], self.ok[on_rows] = False, True
        self.sampler.mark(off_rows, on_rows)

    cfg = ReplayConfig(capacity=3 * 50, n_step=3, per_alpha=0.5)
    fast, ref = (Replay(cfg, (6, 6), 4, 3, **windows(10)) for _ in range(2))
    ref.ring._apply = unfiltered.__get__(ref.ring)
    marked = []
    mark = fast.ring.sampler.mark
    fast.ring.sampler.mark = lambda off, on: (marked.append(off.size), mark(off, on))
    d = Driver(fast, 4, seed=3)
    rng, prio = np.random.default_rng(3), np.random.default_rng(4)
    d.first(np.zeros((3, 6, 6), np.uint8))
    ref.add_first(np.zeros((3, 6, 6), np.uint8), torch.zeros(3, 4, dtype=torch.float16))
    for i, step in enumerate(synthetic_steps(3, 260, rng, max_len=40, cut=0.01)):
        a = rng.integers(0, 4, 3)
        d.step(a, step)
        ref.add(a, step, torch.from_numpy(np.stack([log.emb[-1] for log in d.logs])))
        if i % 5 == 0 and fast.online_transitions:
            b = fast.sample(8, np.random.default_rng(i))
            td = prio.random(8) * 3
            fast.update_priorities(b.index, td)
            ref.update_priorities(b.index, td)
        np.testing.assert_array_equal(fast.ring.sampler.tree.nodes, ref.ring.sampler.tree.nodes)
    d.check_all(rng)
    # wrapped writes name >= 3 envs x lookback (10) rows; ~1 per env leaves the tree (more at an episode start)
    assert np.mean(marked[-100:]) < 6 and max(marked[-100:]) < 3 * 10


@pytest.mark.parametrize("prioritized", [False, True], ids=["uniform", "per"])
def test_prefetch_equals_eager_with_priorities_one_step_late(cue_store, cache, prioritized):
    """prefetch draws in the caller's thread in the same order: uniform batches equal the eager ones; with
    PER they equal an eager replay whose priority updates land one sample late (the stale-by-one rule)."""
    cfg = ReplayConfig(prioritized=prioritized, per_alpha=0.6, per_beta=0.4)
    win = windows(8)
    eager = Replay.from_store(cue_store, "downsample", cfg, cache_dir=cache, **win)
    pre = Replay.from_store(
        cue_store, "downsample", dataclasses.replace(cfg, prefetch=True), cache_dir=cache, **win
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
