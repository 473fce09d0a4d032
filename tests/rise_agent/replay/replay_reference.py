"""Naive references the replay tests share: rows in plain lists, a transition rebuilt row by row, a driver
that feeds a replay and its naive log the same steps, synthetic steps with every ending."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from rise_agent.network import NetworkConfig
from rise_agent.replay import Replay
from rise_data.envs import Step
from rise_data.store import open_store

CUE = "rise/CueMemory-v0"


def windows(k: int, s: int = 4) -> dict:
    """The network config that owns the windows (K, S), as the keyword argument Replay takes it in."""
    return {"network": NetworkConfig(n_actions=1, context_len=k, frame_stack=s)}


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


def feed(replays, steps, rng, dim) -> None:
    """The same steps (random actions, embeddings) into every replay."""
    for step in steps:
        a, emb = rng.integers(0, 4, 3), torch.from_numpy(rng.normal(size=(3, dim)).astype(np.float16))
        for r in replays:
            r.add(a, step, emb)
