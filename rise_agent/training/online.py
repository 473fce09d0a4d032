"""The online loop: acting overlapped with learning, BTR's replay ratio exactly.

Per vector step of ``num_envs`` env steps the learner files the step (replay, episode bookkeeping, the
optional output store) and, once ``learning_starts`` *online* transitions are in replay, owes
``num_envs / replay_ratio`` gradient steps; it takes the whole part of what it owes and carries the rest
(also across a resume), so over a run ``updates == (env steps since learning started) // replay_ratio``.
The acting side runs in :class:`~rise_agent.acting.thread.ActingThread`, ``policy_lag`` vector steps ahead
at most (see that module for the handshake).
"""

from __future__ import annotations

import math
import time

import numpy as np

from rise_agent.acting.thread import ActingThread, WeightGate, actor_copy, copy_weights
from rise_data.envs import make_env
from rise_data.envs.rollout import Rollout
from rise_data.options import to_json

__all__ = ["run_online", "updates_owed"]


def updates_owed(owed: float, num_envs: int, replay_ratio: int) -> tuple[int, float]:
    """(gradient steps to take now, the fraction carried) after one vector step."""
    owed += num_envs / replay_ratio
    n = math.floor(owed + 1e-9)
    return n, owed - n


def _sink(r):
    c, p = r.config, r.parts
    if not c.output_store:
        return None
    from rise_agent.training.writeback import EpisodeSink

    name = p.embedding or (p.encoder_spec.name.replace(":", ".") if p.encoder_spec else None)
    command = "rise-agent train --write-back" if c.write_back else "rise-agent train --save-store"
    return EpisodeSink(c.output_store, p.spec, p.encoder_spec, name, to_json(c), command), name


def run_online(r) -> None:
    """Run the online loop of training run ``r`` (a ``rise_agent.training.train._Run``) to its env-step target."""
    from rise_agent.training.train import epsilon_at, make_actor

    c, p = r.config, r.parts
    sink, emb_name = _sink(r) or (None, None)
    env = make_env(p.spec, num_envs=c.num_envs)
    keep = sink is not None
    extras = {emb_name: ((p.net.embed_dim,), "float16")} if keep and emb_name and p.encoder_spec else None
    rollout = Rollout(env, obs=keep, frames=keep and sink.frames, extras=extras)
    twin = actor_copy(p.learner.online)
    gate = WeightGate(c.policy_lag)
    start = r.counters["env_steps"]
    steps = math.ceil((c.env_steps - start) / c.num_envs)
    thread = ActingThread(
        rollout,
        make_actor(r, twin),
        gate,
        lambda s: epsilon_at(c, start + s * c.num_envs),
        np.random.default_rng([c.seed, start]),
        steps,
        seed=c.seed + start,
    )
    returns = []
    thread.start()
    try:
        _, step, emb = thread.get()
        t_loop = time.perf_counter()  # the loop proper, after building envs and the first reset
        p.replay.add_first(step.obs, emb)
        _file(r, rollout, sink, step, emb, emb_name, returns)
        for t in range(steps):
            actions, step, emb = thread.get()
            p.replay.add(actions, step, emb)
            r.counters["env_steps"] += c.num_envs
            _file(r, rollout, sink, step, emb, emb_name, returns)
            before = r.counters["updates"]
            if p.replay.online_transitions >= max(c.learning_starts, c.batch_size):
                r.counters.setdefault("learning_started_at", r.counters["env_steps"])
                n, carry = updates_owed(r.counters.get("owed", 0.0), c.num_envs, c.replay_ratio)
                r.counters["owed"] = (
                    carry + n
                )  # paid one by one, so an interrupted step's debt survives a resume
                r.learn(n, pay=True)
                r.maybe_checkpoint()
                if r.eval_due(before):
                    r.evaluate()
            if t + 1 + c.policy_lag < steps:  # a later actor step acts with these weights
                learned = r.counters["updates"] != before
                gate.publish(t, (lambda: copy_weights(p.learner.online, twin)) if learned else (lambda: None))
        r.counters["max_policy_lag"] = gate.max_lag_seen
        r.counters["loop_seconds"] = r.counters.get("loop_seconds", 0.0) + time.perf_counter() - t_loop
    finally:
        thread.stop()
        if sink is not None:
            sink.put(rollout.cut_running())
            sink.close()
        env.close()


def _file(r, rollout: Rollout, sink, step, emb, emb_name, returns) -> None:
    extras = {emb_name: emb.cpu().numpy()} if rollout.extras else None
    finished = rollout.file(step, extras)
    for f in finished:
        r.counters["episodes"] += 1
        r.logger.log(
            "episodes",
            r.counters,
            {"return": f.ret, "length": f.length, "truncated": int(f.truncated), "wall": time.time() - r.t0},
        )
    if sink is not None and finished:
        sink.put(finished)
