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
