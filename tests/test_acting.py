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
    """The actor's copy is a fresh network: no hooks (so no Learner, target or Adam state through them),
    no gradients, the learner's weights and spectral-norm vectors; acting leaves those vectors as they
    are, and its output equals the source network's with spectral norm in eval mode (same noise, taus)."""
    import copy

    import torch

    from rise_agent.acting.thread import actor_copy, copy_weights
    from rise_agent.learner import Learner, LearnerConfig
    from rise_agent.network import NetworkConfig

    cfg = NetworkConfig(
        n_actions=3, context_len=4, embed_dim=8, lstm_hidden=8, impala_channels=(4, 8, 8), hidden=16
    )
    learner = Learner(cfg, LearnerConfig(), "cpu")
    twin = actor_copy(learner.online)
    assert learner.online.combine_proj._forward_hooks and not twin.combine_proj._forward_hooks
    assert not any(p.requires_grad for p in twin.parameters())
    assert twin.training and all(
        not m.training for m in twin.modules() if type(m).__name__ == "_SpectralNorm"
    )
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
    for m in ref.modules():
        if type(m).__name__ == "_SpectralNorm":
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
    actor = Actor(make_network(cfg), Fixed(), e, cfg.frame_stack, k)
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
