"""``CollectConfig``: everything ``rise-data collect`` is asked to do (its CLI options are generated from it).

Each field's trailing comment is its ``--help`` text (rise_data.options); the config is saved in the
store's history.
"""

from __future__ import annotations

from dataclasses import dataclass

from rise_data.options import ConfigError, param
from rise_data.store.format import Durability, StoreLayout


@dataclass(frozen=True)
class CollectConfig:
    """Everything ``rise-data collect`` was asked to do; saved in the store's history."""

    env_id: str = param(
        help="env with image observations: ALE/Pong-v5, PongNoFrameskip-v4, a gymnasium id, module:EnvId"
    )
    store: str = param(help="store path (created, or appended to if it holds the same env)")
    steps: int | None = param(None, "collect at least this many steps; running episodes are cut as truncated")
    episodes: int | None = param(None, "or collect this many whole episodes")
    num_envs: int = param(8, "parallel environments")
    seed: int = param(0, "seed of the envs and the policy")
    policy: str = param("random", "random, checkpoint (with --checkpoint), or module:function")
    checkpoint: str | None = param(None, "a rise-agent checkpoint for --policy checkpoint")
    frames: bool = param(True, "store the RGB frames the encoders read")
    screen_size: int = param(84, "side of the square grayscale agent observation")
    env_options: dict = param(factory=dict, help="env/preprocessing overrides (--env-option KEY=VALUE)")
    wrappers: list[str] = param(factory=list, help="gymnasium wrappers in order (envs.WRAPPERS)")
    # raising commit_rows trades durability for fewer commits (benchmarks/collect_commit.py measures the cost)
    commit_rows: int = param(
        0, "commit once this many finished rows wait (0: every finished episode at once)"
    )
    layout: StoreLayout = param(factory=StoreLayout, help="chunking and compression of a new store")
    durability: Durability = param("safe", "safe: fsync each commit (power loss); fast: no fsync (scratch)")
    progress: bool = param(True, "show a progress bar")

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.episodes is None):
            raise ConfigError("give exactly one of --steps N or --episodes N")
        if (self.steps or self.episodes) <= 0 or self.num_envs <= 0:
            raise ConfigError("--steps/--episodes and --num-envs must be positive")
        if self.commit_rows < 0:
            raise ConfigError("--commit-rows must be >= 0 (0: commit every finished episode at once)")
