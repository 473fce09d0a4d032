"""The online loop with acting overlapped: :func:`~rise_agent.training.reference.run_reference`'s steps,
the acting side in an :class:`~rise_agent.acting.thread.ActingThread` at most ``policy_lag`` vector steps
ahead (see that module for the handshake).

This thread files each vector step (replay, episodes, the output store) and learns what the replay ratio
owes, with the reference loop's own functions; the actor thread acts, steps the envs and embeds the new
frames meanwhile. With ``env_groups > 1`` the actor's groups step in turn. tests/rise_agent/training/test_reference_loop.py
checks this loop gives the reference loop's replay contents, losses and weights.

How the two threads share a CPU: each runs its torch ops on the one intra-op pool (``OMP_NUM_THREADS``;
the recipes set 1), and the Python between ops holds the GIL, which torch releases inside each op. The
emulator runs in its own C++ threads (Atari: :func:`~rise_agent.acting.groups.ale_threads` leaves two
cores to these two threads); Python envs step inside the actor thread. At the cue recipe's sizes a
vector step's four updates cost many times the actor's step, so on two cores the overlap hides the
acting and nothing more; where runs share the cores (``learning.py --jobs 2``) the serial loop costs
the same.
"""

from __future__ import annotations

import math
import time

import numpy as np

from rise_agent.acting.groups import acting_env
from rise_agent.acting.thread import ActingThread, WeightGate, actor_copy, copy_weights
from rise_agent.training.reference import (
    close_output,
    epsilon_at,
    file_step,
    learn_owed,
    learning_due,
    make_actor,
    make_rollout,
    output_store,
)
from rise_agent.training.session import Session

__all__ = ["run_online"]


def run_online(s: Session) -> None:
    """Run the online loop of session ``s`` to its env-step target (continues a resumed run)."""
    c, p = s.config, s.parts
    out = output_store(s)
    env = acting_env(p.spec, c.num_envs, c.acting)
    rollout = make_rollout(s, env, out)
    twin = actor_copy(p.learner.online)
    gate = WeightGate(c.policy_lag)
    start = s.counters.env_steps
    steps = math.ceil((c.env_steps - start) / c.num_envs)
    thread = ActingThread(
        rollout,
        make_actor(s, twin),
        gate,
        lambda t: epsilon_at(c, start + t * c.num_envs),
        np.random.default_rng([c.seed, start]),
        steps,
        seed=c.seed + start,
        config=c.acting,
    )
    thread.start()
    try:
        first = thread.get()
        t_loop = time.perf_counter()  # the loop proper, after building envs and the first reset
        p.replay.add_first(first.step.obs, first.emb)
        file_step(s, rollout, out, first.step, first.emb)
        for t in range(steps):
            got = thread.get()
            assert got.actions is not None  # only the reset step (first) has none
            p.replay.add(got.actions, got.step, got.emb)
            s.counters.env_steps += c.num_envs
            file_step(s, rollout, out, got.step, got.emb)
            learned = learning_due(s) and learn_owed(s) > 0
            if t + 1 + c.policy_lag < steps:  # a later actor step acts with these weights
                gate.publish(t, (lambda: copy_weights(p.learner.online, twin)) if learned else (lambda: None))
        s.counters.max_policy_lag = gate.max_lag_seen
        s.counters.loop_seconds += time.perf_counter() - t_loop
    finally:
        thread.stop()
        close_output(rollout, out)
        env.close()
