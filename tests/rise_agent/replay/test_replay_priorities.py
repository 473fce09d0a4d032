"""Samplers and PER: weights against naive sums, draw frequencies, the ring's sum-tree under wrapped writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from replay_reference import Driver, roundtrip, synthetic_steps, windows

from rise_agent.replay import PrioritizedSampler, Replay, ReplayConfig, UniformSampler
from rise_data.store import open_store


@pytest.fixture()
def cache(tmp_path) -> str:
    return str(tmp_path / "cache")


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


def test_per_frequencies_and_weights(cue_replay_store, cache):
    cfg = ReplayConfig(per_alpha=1.0, per_beta=0.5, per_eps=1e-9)
    rp = Replay.from_store(cue_replay_store, None, cfg, cache_dir=cache, **windows(0))
    rows = np.flatnonzero(~open_store(cue_replay_store).read("is_last"))
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
