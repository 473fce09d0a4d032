"""Collecting policies: ``random`` and ``module:function`` plug-ins (e.g. a trained rise-agent checkpoint).

A policy maps one vector step to actions. Plug-ins are imported by name at run time, so rise_data never
imports rise_agent: ``--policy rise_agent.acting.policy:from_checkpoint --checkpoint run/ckpt.pt``.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from rise_data.envs import Step
from rise_data.errors import UserError

ALIASES = {"checkpoint": "rise_agent.acting.policy:from_checkpoint"}


class PolicyError(UserError):
    """The policy cannot be built; the message says what to pass instead."""


class Policy(Protocol):
    def act(self, step: Step) -> np.ndarray:
        """Actions (num_envs,) int64 for the observations of ``step``."""
        ...

    def describe(self) -> dict:
        """JSON description recorded in the store (name, checkpoint and its sha256, ...)."""
        ...


class RandomPolicy:
    """Uniform random actions from a seeded generator."""

    def __init__(self, n_actions: int, seed: int):
        self.n_actions, self.seed = n_actions, seed
        self.rng = np.random.default_rng(seed)

    def act(self, step: Step) -> np.ndarray:
        # len(step.reward), not step.obs: reading obs would make the agent view here, before the envs are
        # sent their actions, instead of while they step
        return self.rng.integers(self.n_actions, size=len(step.reward), dtype=np.int64)

    def describe(self) -> dict:
        return {"name": "random", "seed": self.seed}


def make_policy(name: str, env: dict, num_envs: int, seed: int, checkpoint: str | None = None) -> Policy:
    """Build a policy by name: ``random``, ``checkpoint`` or ``module:function``."""
    if name == "random":
        if checkpoint:
            raise PolicyError("--checkpoint is for a trained policy; use --policy checkpoint with it")
        return RandomPolicy(int(env["n_actions"]), seed)
    target = ALIASES.get(name, name)
    if ":" not in target:
        raise PolicyError(
            f"unknown policy '{name}'; use random, checkpoint (with --checkpoint) or module:function"
        )
    module, func = target.split(":", 1)
    try:
        factory = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise PolicyError(f"cannot load policy '{target}': {e}") from None
    return factory(env=env, num_envs=num_envs, seed=seed, checkpoint=checkpoint)
