"""The acting/learning handshake: the actor never acts with weights more than ``lag`` vector steps old,
never reads weights while they are copied, and ``lag=0`` is the serial order."""

from __future__ import annotations

import random
import threading
import time

import pytest

from rise_agent.acting.thread import WeightGate


def _run(lag: int, steps: int = 60, seed: int = 0) -> list[tuple]:
    """Drive the gate from two threads with random delays; returns the event log."""
    gate, log, lock = WeightGate(lag), [], threading.Lock()
    rnd = random.Random(seed)
    state = {"weights": 0, "copying": False}

    def actor():
        for s in range(steps):
            if not gate.actor_may_act(s):
                return
            assert not state["copying"]
            with lock:
                log.append(("act", s, state["weights"]))
            time.sleep(rnd.random() * 1e-3)
            gate.actor_done()

    def copy(t):
        state["copying"] = True
        time.sleep(rnd.random() * 1e-3)
        state["weights"] = t + 1  # the learner's weights after filing step t
        state["copying"] = False

    th = threading.Thread(target=actor)
    th.start()
    for t in range(steps):
        while gate.acted < t + 1:  # the learner files step t once the actor produced it
            time.sleep(1e-4)
        time.sleep(rnd.random() * 1e-3)
        with lock:
            log.append(("learn", t, None))
        if t + 1 + lag < steps:
            gate.publish(t, lambda t=t: copy(t))
    th.join(timeout=10)
    assert not th.is_alive()
    return log


@pytest.mark.parametrize("lag", [0, 1, 3])
def test_actor_weights_are_at_most_lag_steps_old(lag):
    log = _run(lag)
    acts = [(s, w) for kind, s, w in log if kind == "act"]
    assert [s for s, _ in acts] == list(range(60))
    # at step s the actor uses exactly the weights after learner step s - lag - 1 (deterministic)
    assert all(w == max(0, s - lag) for s, w in acts)


def test_lag_zero_is_serial():
    log = _run(0, steps=30)
    order = [(k, s) for k, s, _ in log]
    for s in range(1, 30):  # the actor acts at s only after the learner filed s - 1
        assert order.index(("learn", s - 1)) < order.index(("act", s))


def test_actor_copy_holds_no_learner_and_does_not_power_iterate():
    """The actor's copy is a fresh network: no gradients, the learner's weights and spectral-norm vectors; acting leaves those vectors as they
    are, and its output equals the source network's with spectral norm in eval mode (same noise, taus)."""
    import copy

    import torch

    from rise_agent.acting.thread import actor_copy, copy_weights
    from rise_agent.learner import Learner, LearnerConfig
    from rise_agent.network import NetworkConfig, spectral_norm_modules

    cfg = NetworkConfig(
        n_actions=3, context_len=4, embed_dim=8, lstm_hidden=8, impala_channels=(4, 8, 8), hidden=16
    )
    learner = Learner(cfg, LearnerConfig(), "cpu")
    twin = actor_copy(learner.online)
    assert not any(p.requires_grad for p in twin.parameters())
    assert spectral_norm_modules(twin) and twin.training
    assert not any(m.training for m in spectral_norm_modules(twin))
    f = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    ctx, mask, taus = torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool), torch.rand(2, 8)
    learner.online(f, ctx, mask, taus=taus)  # the learner iterates its vectors; a publish copies them
    copy_weights(learner.online, twin)
    twin.reset_noise()
    copy_weights(twin, learner.online)  # same noise on both (buffers)
    bufs = [b.clone() for b in twin.buffers()]
    q, _ = twin(f, ctx, mask, taus=taus)
    q2, _ = twin(f, ctx, mask, taus=taus)
    assert torch.equal(q, q2) and all(torch.equal(a, b) for a, b in zip(bufs, twin.buffers(), strict=True))
    ref = copy.deepcopy(learner.online)
    for m in spectral_norm_modules(ref):
        m.eval()
    torch.testing.assert_close(q, ref(f, ctx, mask, taus=taus)[0], rtol=0, atol=0)


def test_actor_frame_stack_repeats_the_episode_first_frame():
    """BTR's FrameStack padding in the actor: before an episode's start the stack holds its first frame;
    the context window keeps zeros and mask False there. Naive per-env logs, staggered resets."""
    import numpy as np
    import torch

    from rise_agent.acting.actor import Actor
    from rise_agent.network import NetworkConfig, make_network
    from rise_data.envs import Step

    class Fixed:  # the embedding of a frame: its first 4 pixels (distinct per step)
        dim, name = 4, "fixed"
        preprocessing = type("P", (), {"source": "obs"})()

        def __call__(self, rows):
            return torch.from_numpy(np.asarray(rows)[:, 0, :4].astype(np.float32))

    e, k = 3, 6
    cfg = NetworkConfig(
        n_actions=2, context_len=k, embed_dim=4, lstm_hidden=4, impala_channels=(2, 2, 2), hidden=4
    )
    actor = Actor(make_network(cfg), Fixed(), e)
    rng = np.random.default_rng(0)
    logs = [[] for _ in range(e)]
    for t in range(25):
        obs = rng.integers(0, 256, (e, 84, 84), dtype=np.uint8)
        first = np.ones(e, bool) if t == 0 else rng.random(e) < 0.25
        z = np.zeros(e, bool)
        actor.observe(Step(obs, None, np.zeros(e, np.float32), z, z, first))
        frames, (ctx, mask) = actor.frames(), actor.context()
        for i in range(e):
            logs[i] = [obs[i]] if first[i] else [*logs[i], obs[i]]
            n = len(logs[i])
            for j in range(4):
                want = logs[i][max(0, n - 4 + j)]  # slot j: item n-4+j, the first one before the start
                assert np.array_equal(frames[i, j].numpy(), want)
            for j in range(k):
                q = n - k + j
                assert bool(mask[i, j]) == (q >= 0)
                want = logs[i][q][0, :4].astype(np.float16) if q >= 0 else np.zeros(4, np.float16)
                assert np.array_equal(ctx[i, j].numpy(), want)


def test_grouped_acting_thread_records_what_each_group_env_did():
    """Double-buffered acting (2 env groups): every vector step the thread hands over is the one the
    groups' envs produced from the recorded actions -- replayed into fresh envs of the same seeds, the
    observations match step for step -- and its embeddings are the encoder's of those frames."""
    import numpy as np
    import torch

    from rise_agent.acting.actor import Actor
    from rise_agent.acting.config import ActingConfig
    from rise_agent.acting.groups import GroupedVectorEnv, acting_env
    from rise_agent.acting.thread import ActingThread, WeightGate, actor_copy
    from rise_agent.network import NetworkConfig, make_network
    from rise_data.collect.rollout import Rollout
    from rise_data.encode.encoders import make_encoder
    from rise_data.envs import env_spec, make_env

    spec = env_spec("rise/CueMemory-v0", delay=3)
    env = acting_env(spec, 5, ActingConfig(env_groups=2))
    assert isinstance(env, GroupedVectorEnv) and [s.stop - s.start for s in env.slices] == [3, 2]
    enc = make_encoder("downsample")
    cfg = NetworkConfig(
        n_actions=env.n_actions,
        context_len=3,
        embed_dim=enc.dim,
        lstm_hidden=4,
        impala_channels=(2, 2, 2),
        hidden=4,
    )
    actor = Actor(actor_copy(make_network(cfg)), enc, 5)
    rollout, gate = Rollout(env), WeightGate(1)
    groups = ActingConfig(env_groups=2)
    th = ActingThread(
        rollout, actor, gate, lambda s: 0.5, np.random.default_rng(0), 12, seed=3, config=groups
    )
    th.start()
    items = [th.get()]
    rollout.file(items[0].step)
    for t in range(12):
        items.append(th.get())
        rollout.file(items[-1].step)  # the Rollout's own bookkeeping accepts the grouped steps in order
        if t + 2 < 12:
            gate.publish(t, lambda: None)
    th.stop()
    env.close()
    assert items[0].actions is None and all(len(i.actions) == 5 for i in items[1:])
    refs = [make_env(spec, num_envs=n) for n in (3, 2)]
    obs = [r.reset(seed=3 + start).obs for start, r in zip((0, 3), refs, strict=True)]  # as ungrouped
    np.testing.assert_array_equal(np.concatenate(obs), items[0].step.obs)
    for actions, step, emb, _ in items[1:]:
        parts = [refs[0].step(actions[:3]), refs[1].step(actions[3:])]
        np.testing.assert_array_equal(np.concatenate([p.obs for p in parts]), step.obs)
        np.testing.assert_array_equal(np.concatenate([p.is_first for p in parts]), step.is_first)
        torch.testing.assert_close(emb, enc(step.frame).half(), rtol=0, atol=0)
    for r in refs:
        r.close()


def test_group_slices_and_ale_threads():
    from rise_agent.acting.groups import ale_threads, group_slices

    assert group_slices(5, 2) == [slice(0, 3), slice(3, 5)] and group_slices(4, 1) == [slice(0, 4)]
    for n, g in [(64, 2), (7, 3), (3, 3)]:
        sl = group_slices(n, g)
        assert (
            sl[0].start == 0
            and sl[-1].stop == n
            and all(a.stop == b.start for a, b in zip(sl, sl[1:], strict=False))
        )
        assert max(s.stop - s.start for s in sl) - min(s.stop - s.start for s in sl) <= 1
    with pytest.raises(ValueError, match="env groups"):
        group_slices(2, 3)
    # 16 cores: 14 emulator threads, 2 left to the learner and the actor; never 0, never more than envs
    assert ale_threads(64, 16) == 14 and ale_threads(8, 16) == 8 and ale_threads(64, 2) == 1


def _thread_items(device: str, actor_stream: bool, steps: int = 8) -> list:
    import numpy as np
    import torch

    from rise_agent.acting.actor import Actor
    from rise_agent.acting.config import ActingConfig
    from rise_agent.acting.thread import ActingThread, WeightGate, actor_copy, copy_weights
    from rise_agent.network import NetworkConfig, make_network
    from rise_data.collect.rollout import Rollout
    from rise_data.encode.encoders import make_encoder
    from rise_data.envs import env_spec, make_env

    env = make_env(env_spec("rise/CueMemory-v0", delay=3), num_envs=3)
    enc = make_encoder("downsample").to(device)
    cfg = NetworkConfig(
        n_actions=env.n_actions,
        context_len=3,
        embed_dim=enc.dim,
        lstm_hidden=4,
        impala_channels=(2, 2, 2),
        hidden=4,
    )
    torch.manual_seed(0)
    learner_net = make_network(cfg).to(device)
    twin = actor_copy(learner_net)
    gate = WeightGate(1)
    rollout = Rollout(env)
    th = ActingThread(
        rollout, Actor(twin, enc, 3, device=device), gate, lambda s: 0.3, np.random.default_rng(0), steps, 1,
        ActingConfig(actor_stream=actor_stream),
    )  # fmt: skip
    th.start()
    items = [th.get()]
    for t in range(steps):
        items.append(th.get())
        with torch.no_grad():
            for p in learner_net.parameters():  # the learner moves; publishes hand the copy over
                p.add_(0.01)
        if t + 2 < steps:
            gate.publish(t, lambda: copy_weights(learner_net, twin))
    th.stop()
    env.close()
    return [(i.actions, i.step.obs, i.emb.cpu()) for i in items]


def _same_items(x, y) -> None:
    import numpy as np
    import torch

    for (a1, o1, e1), (a2, o2, e2) in zip(x, y, strict=True):
        assert (a1 is None and a2 is None) or np.array_equal(a1, a2)
        assert np.array_equal(o1, o2) and torch.equal(e1, e2)


def test_actor_stream_flag_is_the_default_path_on_cpu():
    """ActingConfig.actor_stream without CUDA: the same actions, steps and embeddings as without it."""
    import torch

    torch.manual_seed(1)
    a = _thread_items("cpu", False)
    torch.manual_seed(1)
    _same_items(a, _thread_items("cpu", True))


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_actor_stream_on_cuda_equals_the_shared_stream():
    """The actor on its own stream with event handoffs acts exactly as on the shared default stream."""
    import torch

    torch.backends.cudnn.deterministic = True
    torch.manual_seed(1)
    a = _thread_items("cuda", False)
    torch.manual_seed(1)
    _same_items(a, _thread_items("cuda", True))
