"""The rollout driver against a naive per-env loop on a real env, interrupts at every line, stored extras."""

from __future__ import annotations

import linecache
import sys

import numpy as np
import pytest

from rise_data.collect import rollout as rollout_module
from rise_data.collect.rollout import BLOCK_ROWS, Rollout
from rise_data.envs import env_spec, make_env
from rise_data.store import StoreLayout, create_store, open_store
from rise_data.store.check import check_store

# rise's own T-maze (shipped, so these run everywhere): under random actions its episodes end at the junction
# or at the step limit, 50-90 steps: varying lengths, both endings, episodes spanning buffer blocks
ENV, ENV_OPTIONS = "rise/TMaze-v0", {"length": 24, "max_steps": 90}
N_ENVS, STEPS, SEED = 3, 160, 5


@pytest.fixture(scope="module")
def spec():
    return env_spec(ENV, **ENV_OPTIONS)


def _actions(n_actions: int) -> np.ndarray:
    return np.random.default_rng(SEED).integers(n_actions, size=(STEPS + 2, N_ENVS))


def naive_episodes(spec, steps: int = STEPS) -> tuple[list[dict], list[dict], list[int]]:
    """Plain lists per env over the same env, seed and actions: (ended episodes, running ones, the steps
    at which an episode ended)."""
    env = make_env(spec, num_envs=N_ENVS)
    acts = _actions(env.n_actions)
    step = env.reset(seed=SEED)
    cur = [
        {"obs": [step.obs[i]], "frame": [step.frame[i]], "action": [], "reward": []} for i in range(N_ENVS)
    ]
    ended, end_steps = [], []
    for k in range(steps):
        step = env.step(acts[k])
        for i in range(N_ENVS):
            e = cur[i]
            if step.is_first[i]:
                cur[i] = e = {"obs": [], "frame": [], "action": [], "reward": []}
            else:
                e["action"].append(acts[k][i])
                e["reward"].append(step.reward[i])
            e["obs"].append(step.obs[i])
            e["frame"].append(step.frame[i])
            if step.terminated[i] or step.truncated[i]:
                ended.append({**e, "env": i, "terminated": bool(step.terminated[i])})
                end_steps.append(k)
                cur[i] = {"obs": [], "frame": [], "action": [], "reward": []}
    env.close()
    running = [{**e, "env": i, "terminated": False} for i, e in enumerate(cur) if e["action"]]
    return ended, running, end_steps


def drive(spec, keep: dict, steps: int = STEPS, interrupt_at: int | None = None):
    """The collect loop (send before file) for ``steps`` steps; ``interrupt_at``: raise KeyboardInterrupt at
    that line event inside the last step's bookkeeping, then continue as collect does after a stop."""
    rollout = Rollout(make_env(spec, num_envs=N_ENVS), **keep)
    acts = _actions(rollout.env.n_actions)
    out = []
    step = rollout.reset(seed=SEED)
    out += rollout.file(step)
    rollout.send(acts[0])
    lines: list[str] = []  # the source of each line event so far

    def tracer(frame, event, arg):
        # CPython runs signal handlers only at calls and loop back-edges, never between file()'s plain
        # ``self._ended = []`` and its ``return out``: that one line is no interrupt point
        src = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
        if frame.f_code.co_name == "file" and src == "return out":
            return tracer
        if frame.f_code.co_filename.endswith("rollout.py") and event == "line":
            lines.append(src)
            if len(lines) == interrupt_at:
                raise KeyboardInterrupt
        return tracer

    try:
        for k in range(steps):
            step = rollout.recv()
            rollout.send(acts[k + 1])
            if interrupt_at is not None and k == steps - 1:
                sys.settrace(tracer)
            try:
                out += rollout.file(step)
            finally:
                sys.settrace(None)
    except KeyboardInterrupt:
        pass
    rollout.recv()
    out += rollout.cut_running()
    rollout.close()
    return out, lines


def _same(got, want, rows: bool) -> None:
    key = lambda f: (f["env"], len(f["action"])) if isinstance(f, dict) else (f.env_index, f.length)  # noqa: E731
    got, want = sorted(got, key=key), sorted(want, key=key)
    assert [key(f) for f in got] == [key(f) for f in want]
    for g, w in zip(got, want, strict=True):
        assert g.terminated == w["terminated"] and g.truncated == (not w["terminated"])
        assert g.ret == pytest.approx(float(np.sum(w["reward"], dtype=np.float64)))
        if rows:
            ep = g.episode
            assert np.array_equal(ep.obs[0 : len(ep.obs)], np.stack(w["obs"]))
            assert np.array_equal(ep.frame[0 : len(ep.frame)], np.stack(w["frame"]))
            assert np.array_equal(ep.action, w["action"]) and np.array_equal(ep.reward, w["reward"])
        else:
            assert g.episode is None


def test_matches_naive_loop_keeping_rows_or_nothing(spec):
    ended, running, _ = naive_episodes(spec)
    assert len(ended) >= 4 and any(len(e["obs"]) > BLOCK_ROWS for e in ended)  # episodes span blocks
    got, _ = drive(spec, {"obs": True, "frames": True})
    _same(got, ended + running, rows=True)
    got, _ = drive(spec, {})
    _same(got, ended + running, rows=False)


def _match(f, w: dict, steps: int) -> bool:
    """Finished ``f`` is naive episode ``w`` cut to its first ``steps`` actions."""
    ep = f.episode
    return (
        f.length == steps
        and len(ep.obs) == steps + 1
        and np.array_equal(ep.obs[0 : steps + 1], np.stack(w["obs"][: steps + 1]))
        and np.array_equal(ep.frame[0 : steps + 1], np.stack(w["frame"][: steps + 1]))
        and np.array_equal(ep.action, w["action"][:steps])
    )


@pytest.mark.parametrize("every", [pytest.param(True, marks=pytest.mark.slow), False])
def test_interrupt_at_any_line_loses_nothing_and_cuts_nothing_twice(spec, every, monkeypatch):
    """A KeyboardInterrupt at a line of a step's file(), then cut_running(): every episode exactly once; the
    one the interrupted step extended is whole or cut one step earlier (as truncated). The interrupted step
    is the first that ends an episode, and starts a block (packing the full one) in every env that did not
    end before. Each line in turn when slow; by default the lines around the ending episode's bookkeeping
    and the hand-over."""
    steps = naive_episodes(spec)[2][0] + 1
    ended, running, _ = naive_episodes(spec, steps)
    monkeypatch.setattr(rollout_module, "BLOCK_ROWS", next(d for d in range(4, steps) if steps % d == 0))
    keep = {"obs": True, "frames": True}
    _, lines = drive(spec, keep, steps, interrupt_at=10**9)
    assert any(src.startswith("self.pool.pack(") for src in lines)
    assert len(lines) > 3 * N_ENVS
    end = next(k for k, src in enumerate(lines) if src.startswith("b.end ="))
    listed = next(k for k, src in enumerate(lines) if src.startswith("self._ended.append"))
    window = {*range(end - 6, listed + 3), *range(len(lines) - 4, len(lines))}
    chosen = range(1, len(lines) + 1) if every else sorted(k + 1 for k in window)
    for at in chosen:
        got, _ = drive(spec, keep, steps, interrupt_at=at)
        for i in range(N_ENVS):
            want = [e for e in ended + running if e["env"] == i]
            mine = [f for f in got if f.env_index == i]
            for w in want[:-1]:  # finished before the interrupted step: exactly as the naive loop
                hits = [f for f in mine if f.terminated == w["terminated"] and _match(f, w, len(w["action"]))]
                assert len(hits) == 1, (at, i)
                mine.remove(hits[0])
            last = want[-1]
            n = len(last["action"])
            if len(mine) == 1 and _match(mine[0], last, n):
                assert mine[0].terminated == last["terminated"]
            elif n > 1 or mine:
                assert len(mine) == 1 and mine[0].truncated and _match(mine[0], last, n - 1), (at, i)


def test_extras_are_stored_and_committed_with_their_rows(spec, tmp_path):
    """Per-row extras (the embeddings an online actor computed) become store embeddings in the same append."""
    import torch

    from rise_data.encode import EncodeConfig, embedding_record
    from rise_data.encode.encoders import make_encoder

    encoder = make_encoder("downsample", source="obs")
    path = str(tmp_path / "x.zarr")
    store = create_store(path, spec, spec["obs_shape"], None)
    record = embedding_record(EncodeConfig(path, encoder="downsample", source="obs"), encoder)
    store.create_embedding("downsample", encoder.dim, "float16", record, StoreLayout())
    rollout = Rollout(
        make_env(spec, num_envs=2), obs=True, extras={"downsample": ((encoder.dim,), "float16")}
    )

    def emb(obs: np.ndarray) -> np.ndarray:
        return encoder(torch.from_numpy(obs)).to(torch.float16).numpy()

    rng = np.random.default_rng(0)
    step = rollout.reset(seed=0)
    done = rollout.file(step, {"downsample": emb(step.obs)})
    rollout.send(rng.integers(rollout.env.n_actions, size=2))
    for _ in range(150):
        step = rollout.recv()
        rollout.send(rng.integers(rollout.env.n_actions, size=2))
        done += rollout.file(step, {"downsample": emb(step.obs)})
    rollout.recv()
    done += rollout.cut_running()
    rollout.close()
    store.append_episodes([f.episode for f in done])
    s = open_store(path)
    assert s.embedding_meta("downsample")["rows_done"] == s.rows > 150
    assert np.array_equal(s.embedding("downsample")[: s.rows], emb(s.read("obs")))
    assert not [p for p in check_store(path) if p.severity == "error"]
    with pytest.raises(ValueError, match="needs extras"):
        other = Rollout(make_env(spec, num_envs=1), obs=True, extras={"downsample": ((4,), "float16")})
        other.file(other.reset(seed=0))


def test_misuse_is_refused(spec):
    rollout = Rollout(make_env(spec, num_envs=1))
    with pytest.raises(RuntimeError, match="send"):
        rollout.recv()
    step = rollout.reset(seed=0)
    rollout.file(step)
    with pytest.raises(RuntimeError, match="once and in order"):
        rollout.file(step)
    with pytest.raises(ValueError, match="obs=True"):
        Rollout(rollout.env, frames=True)
    rollout.close()


def test_packed_block_reads_equal_before_and_after_packing():
    """Rows read equal from the raw block and from the packed bytes; packing gives the block back."""
    from rise_data.collect.rollout import BlockPool, PackedBlock

    pool = BlockPool({"obs": ((84, 84), "uint8")})
    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 8, (BLOCK_ROWS, 84, 84), dtype=np.uint8) for _ in range(2)]
    rows = [b.copy() for b in blocks]
    packed = [PackedBlock("obs", b) for b in blocks]
    assert np.array_equal(packed[0][3:9], rows[0][3:9])
    for p in packed:
        p.pack(pool)
    assert pool.take("obs") is blocks[0] and pool.take("obs") is blocks[1] and packed[0].block is None
    for p, r in [(0, 0), (1, 1), (0, 0), (1, 1)]:  # alternating blocks reuse the reader's one buffer
        assert np.array_equal(packed[p][0 : len(packed[p])], rows[r])
    assert np.array_equal(packed[1][60:], rows[1][60:])
