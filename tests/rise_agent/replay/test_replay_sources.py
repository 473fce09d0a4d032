"""Store and ring together: offline_fraction, priority updates per source, describe, state round trip."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from replay_reference import Driver, check_batch, naive, roundtrip, same, store_log, synthetic_steps, windows

from rise_agent.replay import Mixer, Replay, ReplayConfig, split_batch
from rise_data.store import open_store


@pytest.fixture()
def cache(tmp_path) -> str:
    return str(tmp_path / "cache")


def test_mixed_sources_and_state_dict_round_trip(cue_replay_store, cache):
    cfg = ReplayConfig(capacity=2 * 100, per_beta=0.4, offline_fraction=0.25)
    D = open_store(cue_replay_store).embedding("downsample").shape[1]
    rp = Replay.from_store(cue_replay_store, "downsample", cfg, num_envs=2, cache_dir=cache, **windows(8))
    base = open_store(cue_replay_store).rows
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
    log = store_log(cue_replay_store, "downsample")
    b = rp.sample(400, rng)
    assert (b.index < base).sum() == 100  # offline_fraction 0.25, exactly
    check_batch(b, lambda t: naive(log, t, rp.config) if t < base else d.ref(t), rp.config)

    sd = roundtrip(rp.state_dict())  # RAM ring: its rows travel in the state
    rp2 = Replay.from_store(cue_replay_store, "downsample", cfg, num_envs=2, cache_dir=cache, **windows(8))
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
                cue_replay_store, "downsample", cfg, num_envs=2, cache_dir=cache, **other
            ).load_state_dict(sd)


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
def test_offline_fraction_is_exact_from_the_first_sample(cue_replay_store, cache, fraction, want):
    cfg = ReplayConfig(capacity=2 * 100, n_step=3, offline_fraction=fraction)
    rp = Replay.from_store(cue_replay_store, None, cfg, num_envs=2, cache_dir=cache, **windows(0))
    s = open_store(cue_replay_store)
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


def test_priority_updates_land_in_their_source(cue_replay_store, cache):
    cfg = ReplayConfig(capacity=2 * 100, per_alpha=1.0, per_eps=1e-9, offline_fraction=0.5)
    rp = Replay.from_store(cue_replay_store, None, cfg, num_envs=2, cache_dir=cache, **windows(0))
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


def test_describe_names_sources_sizes_and_shares(cue_replay_store, cache):
    cfg = ReplayConfig(capacity=2 * 100, offline_fraction=0.25)
    rp = Replay.from_store(cue_replay_store, None, cfg, num_envs=2, cache_dir=cache, **windows(0))
    d = rp.describe(256)
    s = open_store(cue_replay_store)
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
    only = Replay.from_store(cue_replay_store, None, ReplayConfig(), cache_dir=cache, **windows(0)).describe()
    assert only["offline_fraction"] == 1.0 and list(only["sources"]) == ["store"]
