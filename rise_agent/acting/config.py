"""How the actor thread acts: env groups, its CUDA stream, where the agent view is made.

Every field's off value is the plain path; the fields change speed, not what is learned (beyond the env
seeds of grouped envs and the <= 1 gray level of the device view on noise-like frames).
"""

from __future__ import annotations

from dataclasses import dataclass

from rise_data.options import ConfigError, param

__all__ = ["ActingConfig"]


@dataclass(frozen=True)
class ActingConfig:
    """How the actor thread steps its envs (the learner's results do not depend on it beyond env seeds)."""

    env_groups: int = param(
        1, "vector envs stepped in turn (2: env stepping overlaps the actor's inference); envs split evenly"
    )
    actor_stream: bool = param(
        False,
        "CUDA: the actor thread on its own high-priority stream; weights and embeddings handed over by events (no whole-device waits between the two threads). Off: the default stream, shared",
    )
    view_on_device: bool = param(
        False,
        "make the agent view from the RGB frame on the actor's device (rise_agent.acting.view), not cv2's",
    )

    def __post_init__(self) -> None:
        if self.env_groups < 1:
            raise ConfigError(f"env_groups must be >= 1, got {self.env_groups}")
