"""A trained checkpoint as a collection policy: ``rise-data collect ... --policy checkpoint --checkpoint PATH``.

``rise_data.collect.policies`` imports this module by name (``rise_agent.acting.policy:from_checkpoint``), so rise_data
never depends on rise_agent. The policy acts like BTR's evaluation: network in eval mode, parameter
noise off, ε-greedy with ε = 0.01, through the same :class:`~rise_agent.acting.actor.Actor` as training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rise_agent.acting.actor import Actor
from rise_agent.evaluation.evaluate import load_agent
from rise_data.collect.policies import PolicyError
from rise_data.encode import resolve_device
from rise_data.encode.encoders import sha256_file
from rise_data.envs import Step

__all__ = ["CheckpointPolicy", "from_checkpoint"]

EPSILON = 0.01  # BTR's evaluation ε


class CheckpointPolicy:
    """Acts with a trained network; ``act`` must see every step, starting with the ``reset()`` step."""

    def __init__(self, path: Path, actor: Actor, seed: int, epsilon: float = EPSILON) -> None:
        self.path = path
        self.actor = actor
        self.seed = seed
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed)
        self.sha256 = sha256_file(path)

    def act(self, step: Step) -> np.ndarray:
        self.actor.observe(step)
        return self.actor.act(self.epsilon, self.rng, greedy_noise_off=True)

    def describe(self) -> dict:
        return {
            "name": "checkpoint",
            "path": str(self.path),
            "sha256": self.sha256,
            "epsilon": self.epsilon,
            "seed": self.seed,
        }


def from_checkpoint(env: dict, num_envs: int, seed: int, checkpoint: str | None) -> CheckpointPolicy:
    """Build the policy of a ``rise-agent train`` checkpoint for ``num_envs`` envs of spec ``env``."""
    if not checkpoint:
        raise PolicyError("--policy checkpoint needs --checkpoint PATH (a checkpoint.pt of rise-agent train)")
    path = Path(checkpoint).resolve()
    device = resolve_device("auto")
    network, encoder, meta = load_agent(path, device)
    trained_on = meta["env"].get("id")
    if trained_on != env["id"]:
        raise PolicyError(f"checkpoint {path} was trained on {trained_on}, not {env['id']}")
    if int(meta["env"].get("n_actions", -1)) != int(env["n_actions"]):
        raise PolicyError(
            f"checkpoint {path} has {meta['env'].get('n_actions')} actions, the env {env['n_actions']}"
        )
    torch.manual_seed(seed)  # IQN's tau samples: a seeded collection acts reproducibly
    actor = Actor(network, encoder, num_envs, device)
    return CheckpointPolicy(path, actor, seed)
