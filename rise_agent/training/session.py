"""A training session: the run's config, parts, directory, device, counters and RNG, and what it does with them.

The loops (:mod:`~rise_agent.training.offline`, :mod:`~rise_agent.training.online`) take a
:class:`Session` and call :meth:`Session.learn`, :meth:`Session.evaluate` and
:meth:`Session.maybe_checkpoint`; :mod:`~rise_agent.training.train` builds the session and picks the loop.
This module knows neither loop.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from rise_agent.config import TrainConfig
from rise_agent.evaluation.evaluate import btr_eval_epsilon, evaluate
from rise_agent.training.build import Parts
from rise_agent.training.checkpoint import Checkpoint, CheckpointError, capture_rng, restore_rng
from rise_agent.training.rundir import Logger, RunDir
from rise_data.options import from_json, to_json

__all__ = ["Counters", "EvalBudget", "Session", "eval_budget"]


@dataclass
class Counters:
    """What a run has done so far; checkpointed, so a resume continues from the same numbers."""

    updates: int = 0  # gradient steps
    env_steps: int = 0  # online env steps over all envs
    episodes: int = 0  # finished online training episodes
    wall: float = 0.0  # seconds of training, over resumes
    owed: float = 0.0  # online: gradient steps owed by the replay ratio (paid one by one)
    learning_started_at: int | None = None  # online: env steps when learning started
    max_policy_lag: int = 0  # online: the largest policy lag the actor saw (vector steps)
    loop_seconds: float = 0.0  # online: seconds in the loop proper, from the first reset

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, tree: dict, where: str = "checkpoint counters") -> Counters:
        return from_json(cls, tree, where)


EVAL_MAX_ENVS = 8  # evaluation envs at most (one per episode below that)
EVAL_MIN_STEPS = 100  # the scaled step cap never goes below this many vector steps
EVAL_MAX_EPISODES = 8  # scaled episodes: one per EVAL_EPISODES_PER env steps of the run, up to this many
EVAL_EPISODES_PER = 25_000


@dataclass(frozen=True)
class EvalBudget:
    """How big each evaluation of a run is, and why (printed in the start-up config)."""

    episodes: int
    max_steps: int | None  # vector steps per evaluation (None: episodes run to their end)
    why: str


def eval_budget(config: TrainConfig) -> EvalBudget:
    """Evaluation episodes and step cap: the config's when given, else scaled to the run's size.

    The run's size is its env steps (online) or the env steps its updates stand for at the replay ratio
    (offline). Scaled, an evaluation plays at most about that many env steps: a tiny run is not dwarfed
    by its own evaluation (8 whole Pong episodes after an 800-step run), a full-size one is not capped.
    """
    size = config.env_steps if config.is_online else config.updates * config.replay_ratio
    episodes = config.eval_episodes
    if episodes is None:
        episodes = int(np.clip(size // EVAL_EPISODES_PER, 1, EVAL_MAX_EPISODES))
    if config.eval_max_steps is not None:
        return EvalBudget(episodes, config.eval_max_steps, "as given")
    envs = min(episodes, EVAL_MAX_ENVS)
    cap = max(EVAL_MIN_STEPS, -(-size // envs))
    return EvalBudget(episodes, cap, f"scaled to the run: about its {size} env steps over {envs} envs")


class Session:
    """One training run in progress. ``learn``, ``evaluate``, ``checkpoint`` and ``restore`` are all it does."""

    def __init__(self, config: TrainConfig, parts: Parts, run: RunDir, device: torch.device):
        self.config, self.parts, self.run, self.device = config, parts, run, device
        self.counters = Counters()
        self.rng = np.random.default_rng(config.seed)  # replay sampling
        self.budget = eval_budget(config)
        self._logger: Logger | None = None
        self.t0 = time.time()
        self.last_ckpt = 0

    def open_logger(self, resumed: bool) -> None:
        """Metric writers; on a resume, rows past the checkpoint are dropped first."""
        self._logger = self.run.logger(self.counters if resumed else None)

    @property
    def logger(self) -> Logger:
        """The run's metric writers (:meth:`open_logger` opens them)."""
        if self._logger is None:
            raise RuntimeError("open_logger() before logging")
        return self._logger

    def log(self, kind: str, row: dict) -> None:
        self.logger.log(kind, self.counters, {"wall": time.time() - self.t0, **row})

    # -- checkpoints -----------------------------------------------------------------------------
    def snapshot(self) -> Checkpoint:
        p = self.parts
        return Checkpoint(
            network=p.learner.online.state_dict(),
            network_config=p.net,
            encoder=p.encoder_spec,
            env=p.spec.to_json(),
            train_config=to_json(self.config),
            counters=self.counters.to_json(),
            learner=p.learner.state_dict(),
            rng=capture_rng(self.rng),
            replay=p.replay.state_dict(),
        )

    def checkpoint(self) -> None:
        self.counters.wall = time.time() - self.t0
        self.run.save(self.snapshot())
        self.last_ckpt = self.counters.updates

    def maybe_checkpoint(self) -> None:
        if self.counters.updates - self.last_ckpt >= self.config.checkpoint_every:
            self.checkpoint()

    def restore(self, ck: Checkpoint) -> None:
        """Continue from ``ck``: learner, replay (the online ring continues from its files), counters, RNG."""
        learner, counters, rng = ck.learner, ck.counters, ck.rng
        if learner is None or counters is None or rng is None or "numpy" not in rng:
            raise CheckpointError(
                f"the checkpoint in {self.run.path} holds an agent, not a training run's state: "
                "start a new run there without --resume"
            )
        self.parts.learner.load_state_dict(learner)
        if ck.replay is not None:
            self.parts.replay.load_state_dict(ck.replay)
        self.counters = Counters.from_json(counters)
        generator = restore_rng(rng)
        assert generator is not None  # the numpy state is there (checked above)
        self.rng = generator
        self.t0 = time.time() - self.counters.wall
        self.last_ckpt = self.counters.updates

    # -- learning and evaluation -----------------------------------------------------------------
    def learn(self, n: int, pay: bool = False) -> None:
        """``n`` gradient steps; ``pay``: each one settles a step the online loop owes (``counters.owed``)."""
        p, c = self.parts, self.config
        for _ in range(n):
            batch = p.replay.sample(c.batch_size, self.rng)
            metrics, prio = p.learner.step(batch)
            p.replay.update_priorities(batch.index, prio)
            self.counters.updates += 1
            if pay:
                self.counters.owed -= 1
            if self.counters.updates % c.log_every == 0:
                self.log("train", metrics)

    def evaluate(self) -> dict:
        """BTR's evaluation protocol (noise off, its ε for this many env steps) within the run's budget."""
        c, b = self.config, self.budget
        out = evaluate(
            self.parts.learner.online,
            self.parts.frozen_encoder(c, self.device),
            self.parts.spec.to_json(),
            episodes=b.episodes,
            epsilon=btr_eval_epsilon(self.counters.env_steps),
            seed=c.seed + 10_000,
            max_steps=b.max_steps,
            progress=c.progress,
        )
        row = {k: v for k, v in out.items() if isinstance(v, int | float)}
        row["human_normalized"] = float("nan") if out["human_normalized"] is None else out["human_normalized"]
        row["raw_only"] = int(out["raw_only"])
        row["score_note"] = out["score_note"]
        self.log("eval", row)
        return out

    def eval_due(self, before: int) -> bool:
        """Whether an evaluation falls between ``before`` updates and now."""
        every = self.config.eval_every
        return bool(every) and self.counters.updates // every > before // every
