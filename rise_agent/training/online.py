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

from rise_agent.acting.actor import Actor, epsilon_schedule
from rise_agent.acting.groups import acting_env
from rise_agent.acting.thread import ActingThread, WeightGate, actor_copy, copy_weights
from rise_agent.config import TrainConfig
from rise_agent.training.session import Session
from rise_data.collect.rollout import Rollout
from rise_data.options import to_json

__all__ = ["epsilon_at", "make_actor", "run_online", "updates_owed"]


def updates_owed(owed: float, num_envs: int, replay_ratio: int) -> tuple[int, float]:
    """(gradient steps to take now, the fraction carried) after one vector step."""
    owed += num_envs / replay_ratio
    n = math.floor(owed + 1e-9)
    return n, owed - n


def make_actor(s: Session, network) -> Actor:
    """The acting side's Actor over ``network`` (the actor thread's copy of the learner's network)."""
    c = s.config
    return Actor(
        network,
        s.parts.frozen_encoder(c, s.device),
        c.num_envs,
        s.device,
        view_on_device=c.acting.view_on_device,
    )


def epsilon_at(config: TrainConfig, env_steps: int) -> float:
    """The training ε after ``env_steps`` env steps (BTR's schedule)."""
    return epsilon_schedule(
        env_steps, config.eps_start, config.eps_end, config.eps_decay_steps, config.eps_disable_after
    )


def _sink(s: Session):
    c, p = s.config, s.parts
    if not c.output_store:
        return None
    from rise_agent.training.writeback import EpisodeSink

    name = p.embedding or (p.encoder_spec.name.replace(":", ".") if p.encoder_spec else None)
    command = "rise-agent train --write-back" if c.write_back else "rise-agent train --save-store"
    return EpisodeSink(c.output_store, p.spec, p.encoder_spec, name, to_json(c), command), name


def run_online(s: Session) -> None:
    """Run the online loop of session ``s`` to its env-step target (continues a resumed run)."""
    c, p = s.config, s.parts
    sink, emb_name = _sink(s) or (None, None)
    env = acting_env(p.spec, c.num_envs, c.acting)
    keep = sink is not None
    extras = {emb_name: ((p.net.embed_dim,), "float16")} if keep and emb_name and p.encoder_spec else None
    rollout = Rollout(env, obs=keep, frames=keep and sink.frames, extras=extras)
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
        _, step, emb = thread.get()
        t_loop = time.perf_counter()  # the loop proper, after building envs and the first reset
        p.replay.add_first(step.obs, emb)
        _file(s, rollout, sink, step, emb, emb_name)
        for t in range(steps):
            actions, step, emb = thread.get()
            p.replay.add(actions, step, emb)
            s.counters.env_steps += c.num_envs
            _file(s, rollout, sink, step, emb, emb_name)
            before = s.counters.updates
            if p.replay.online_transitions >= max(c.learning_starts, c.batch_size):
                _learn(s)
            if t + 1 + c.policy_lag < steps:  # a later actor step acts with these weights
                learned = s.counters.updates != before
                gate.publish(t, (lambda: copy_weights(p.learner.online, twin)) if learned else (lambda: None))
        s.counters.max_policy_lag = gate.max_lag_seen
        s.counters.loop_seconds += time.perf_counter() - t_loop
    finally:
        thread.stop()
        if sink is not None:
            sink.put(rollout.cut_running())
            sink.close()
        env.close()


def _learn(s: Session) -> None:
    """Pay what this vector step owes by the replay ratio; checkpoint and evaluate on schedule."""
    c, before = s.config, s.counters.updates
    if s.counters.learning_started_at is None:
        s.counters.learning_started_at = s.counters.env_steps
    n, carry = updates_owed(s.counters.owed, c.num_envs, c.replay_ratio)
    s.counters.owed = carry + n  # paid one by one, so an interrupted step's debt survives a resume
    s.learn(n, pay=True)
    s.maybe_checkpoint()
    if s.eval_due(before):
        s.evaluate()


def _file(s: Session, rollout: Rollout, sink, step, emb, emb_name) -> None:
    extras = {emb_name: emb.cpu().numpy()} if rollout.extras else None
    finished = rollout.file(step, extras)
    for f in finished:
        s.counters.episodes += 1
        s.log("episodes", {"return": f.ret, "length": f.length, "truncated": int(f.truncated)})
    if sink is not None and finished:
        sink.put(finished)
