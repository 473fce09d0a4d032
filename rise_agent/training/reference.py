"""The online loop, plain: one thread, eager, read top to bottom (the shape of CleanRL's ``dqn_atari.py``).

``rise-agent train --policy-lag 0`` runs it. Per vector step of ``num_envs`` env steps:

1. **act**: ε-greedy over the noisy network's argmax, on each env's frame stack and context window
   (:class:`~rise_agent.acting.actor.Actor`, acting with its copy of the online network);
2. **step** the envs and **file** the step: episode bookkeeping, logs, the optional output store;
3. **add** the step to replay (the frames, the frozen encoder's embeddings the actor computed);
4. once ``learning_starts`` *online* transitions are in replay, **learn** what the replay ratio owes,
   ``num_envs / replay_ratio`` gradient steps, the fraction carried to the next vector step (and across a
   resume), so over a run ``updates == (env steps since learning started) // replay_ratio``. Each step:
   sample, ``Learner.step`` (the pure loss, backward, clipped Adam step, target copy), new priorities;
   then the actor's copy takes the new weights;
5. checkpoint and evaluate on the session's schedule.

The fast paths wrap this loop and are tested to give its numbers (tests/rise_agent/training/test_reference_loop.py): the
overlapped actor thread (:mod:`~rise_agent.training.online`, ``policy_lag >= 1``), env groups and replay
prefetch.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np
from torch import Tensor

from rise_agent.acting.actor import Actor, epsilon_schedule
from rise_agent.acting.groups import acting_env
from rise_agent.acting.thread import actor_copy, copy_weights
from rise_agent.config import TrainConfig
from rise_agent.training.session import Session
from rise_agent.training.writeback import EpisodeSink
from rise_data.collect.rollout import Rollout
from rise_data.envs import Step
from rise_data.options import to_json

__all__ = [
    "OutputStore",
    "epsilon_at",
    "file_step",
    "learn_owed",
    "make_actor",
    "output_store",
    "run_reference",
    "updates_owed",
]


def updates_owed(owed: float, num_envs: int, replay_ratio: int) -> tuple[int, float]:
    """(gradient steps to take now, the fraction carried) after one vector step."""
    owed += num_envs / replay_ratio
    n = math.floor(owed + 1e-9)
    return n, owed - n


def epsilon_at(config: TrainConfig, env_steps: int) -> float:
    """The training ε after ``env_steps`` env steps (BTR's schedule)."""
    return epsilon_schedule(
        env_steps, config.eps_start, config.eps_end, config.eps_decay_steps, config.eps_disable_after
    )


def make_actor(s: Session, network) -> Actor:
    """The acting side's Actor over ``network`` (a copy of the learner's online network)."""
    c = s.config
    return Actor(
        network,
        s.parts.frozen_encoder(c, s.device),
        c.num_envs,
        s.device,
        view_on_device=c.acting.view_on_device,
    )


class OutputStore(NamedTuple):
    """Where played episodes go (``--save-store`` / ``--write-back``) and the embeddings name they keep."""

    sink: EpisodeSink
    embedding: str | None


def output_store(s: Session) -> OutputStore | None:
    """The run's output store, or None when it keeps no episodes."""
    c, p = s.config, s.parts
    if not c.output_store:
        return None
    name = p.embedding or (p.encoder_spec.name.replace(":", ".") if p.encoder_spec else None)
    command = "rise-agent train --write-back" if c.write_back else "rise-agent train --save-store"
    sink = EpisodeSink(c.output_store, p.spec.to_json(), p.encoder_spec, name, to_json(c), command)
    return OutputStore(sink, name)


def make_rollout(s: Session, env, out: OutputStore | None) -> Rollout:
    """The episode bookkeeping over ``env``: rows (and embeddings) kept only for an output store."""
    if out is None:
        return Rollout(env)
    name = out.embedding if s.parts.encoder_spec is not None else None
    extras: dict[str, tuple[tuple[int, ...], str]] | None = None
    if name is not None:
        extras = {name: ((s.parts.net.embed_dim,), "float16")}
    return Rollout(env, obs=True, frames=out.sink.frames, extras=extras)


def file_step(s: Session, rollout: Rollout, out: OutputStore | None, step: Step, emb: Tensor | None) -> None:
    """Episode bookkeeping for one received step: count and log finished episodes, store them if kept."""
    extras = None
    if rollout.extras:  # the output store's embeddings (make_rollout)
        assert out is not None and out.embedding is not None and emb is not None
        extras = {out.embedding: emb.cpu().numpy()}
    finished = rollout.file(step, extras)
    for f in finished:
        s.counters.episodes += 1
        s.log("episodes", {"return": f.ret, "length": f.length, "truncated": int(f.truncated)})
    if out is not None and finished:
        out.sink.put(finished)


def learning_due(s: Session) -> bool:
    """Whether the replay holds enough online transitions to learn from."""
    return s.parts.replay.online_transitions >= max(s.config.learning_starts, s.config.batch_size)


def learn_owed(s: Session) -> int:
    """Pay what this vector step owes by the replay ratio; checkpoint and evaluate on schedule.

    Returns the gradient steps taken. ``counters.owed`` holds the debt until each step is paid, so an
    interrupted vector step's debt survives a resume.
    """
    c, before = s.config, s.counters.updates
    if s.counters.learning_started_at is None:
        s.counters.learning_started_at = s.counters.env_steps
    n, carry = updates_owed(s.counters.owed, c.num_envs, c.replay_ratio)
    s.counters.owed = carry + n
    s.learn(n, pay=True)  # n x (sample, Learner.step, update_priorities), logged every log_every
    s.maybe_checkpoint()
    if s.eval_due(before):
        s.evaluate()
    return n


def close_output(rollout: Rollout, out: OutputStore | None) -> None:
    """Store the running episodes, cut as truncated, and close the output store."""
    if out is not None:
        out.sink.put(rollout.cut_running())
        out.sink.close()


def run_reference(s: Session) -> None:
    """Run the online loop of session ``s`` serially to its env-step target (continues a resumed run)."""
    c, p = s.config, s.parts
    out = output_store(s)
    env = acting_env(p.spec, c.num_envs, c.acting)  # one vector env (TrainConfig refuses groups at lag 0)
    rollout = make_rollout(s, env, out)
    actor = make_actor(s, actor_copy(p.learner.online))  # acts with the learner's weights, copied
    rng = np.random.default_rng([c.seed, s.counters.env_steps])  # ε draws and random actions
    start = s.counters.env_steps
    steps = math.ceil((c.env_steps - start) / c.num_envs)
    try:
        step = rollout.reset(seed=c.seed + start)
        t_loop = time.perf_counter()  # the loop proper, after building envs and the first reset
        emb = actor.observe(step)
        p.replay.add_first(step.obs, emb)
        file_step(s, rollout, out, step, emb)
        for t in range(steps):
            # act, then step the envs
            actions = actor.act(epsilon_at(c, start + t * c.num_envs), rng)
            rollout.send(actions)
            step = rollout.recv()
            emb = actor.observe(step)  # the new frames into the windows; their embeddings, computed once
            # add to replay, file the episodes
            p.replay.add(actions, step, emb)
            s.counters.env_steps += c.num_envs
            file_step(s, rollout, out, step, emb)
            # learn what the replay ratio owes; the actor acts with the new weights from the next step
            if learning_due(s) and learn_owed(s):
                copy_weights(p.learner.online, actor.network)
        s.counters.loop_seconds += time.perf_counter() - t_loop
    finally:
        close_output(rollout, out)
        env.close()
