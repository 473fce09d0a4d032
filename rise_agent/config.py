"""The training config: one frozen tree (run, network, learner, replay), each parameter owned once.

K and the frame stack belong to :class:`~rise_agent.network.NetworkConfig`; replay, actor and learner
read them from there. Fields the data decides (``n_actions``, ``embed_dim``, ``frame_hw``) are filled
by the builder from the env and the encoder and are not options. The CLI is generated from these
classes (:mod:`rise_data.options`); the trailing comment of each field is its ``--help`` text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rise_agent.acting.config import ActingConfig
from rise_agent.learner import LearnerConfig
from rise_agent.network import NetworkConfig
from rise_agent.replay import ReplayConfig
from rise_data.options import ConfigError, from_json, param, to_json

__all__ = ["DERIVED", "TrainConfig", "load_config", "save_config"]

# Filled in from the env and the encoder, never set by hand.
# learner.cql_alpha: the mode decides it unless --cql-alpha says otherwise.
DERIVED = {"network.n_actions", "network.embed_dim", "network.frame_hw", "learner.cql_alpha"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run does; BTR's defaults (BTR paper, Table D6) unless noted."""

    run_dir: str = param("", "run directory: config, checkpoint, metrics, curves")
    store: str | None = param(None, "store to pretrain on, or to mix into online replay")
    embedding: str | None = param(None, "embeddings array of the store (default: the only complete one)")
    online: bool = param(False, "learn online in vector envs (implied by --env without --store)")
    env: str | None = param(
        None,
        "env id to learn online from scratch (default: the store's env): an id, module:EnvId or module:function",
    )
    env_option: tuple[str, ...] = param(
        (), "env kwargs KEY=VALUE, comma-separated (e.g. frameskip=4); with --env"
    )
    wrapper: tuple[str, ...] = param(
        (), "gymnasium wrappers NAME[=ARG], comma-separated, in order (docs/envs.md); with --env"
    )
    screen_size: int = param(84, "side of the square grayscale agent view; with --env")
    encoder: str | None = param(
        None, "frozen encoder when there is no store: a registry name or module:function (default resnet18)"
    )
    weights: str | None = param(
        None, "the frozen encoder's weights file (also: where a store's encoder weights moved)"
    )
    allow_plugin: tuple[str, ...] = param(
        (),
        "plug-in code (module:name: an encoder, env or env factory) a store or checkpoint may name, that you trust; comma-separated",
    )
    save_store: str | None = param(
        None, "online: append each finished episode and its embeddings to this store (created if missing)"
    )
    write_back: bool = param(
        False, "online: append each finished episode and its embeddings to --store itself"
    )
    init_checkpoint: str | None = param(
        None, "start from this checkpoint's network (e.g. offline pretraining)"
    )
    updates: int = param(0, "offline: gradient steps")
    env_steps: int = param(50_000_000, "online: env steps over all envs (BTR: 200M frames)")
    num_envs: int = param(64, "online: parallel envs")
    replay_ratio: int = param(64, "online: env steps per gradient step (BTR: one per 64-env vector step)")
    learning_starts: int = param(200_000, "online: online transitions in replay before learning starts")
    policy_lag: int = param(
        1, "online: the actor acts with weights at most this many vector steps old (0: the plain serial loop)"
    )
    eps_start: float = param(1.0, "online: initial epsilon")
    eps_end: float = param(0.01, "online: epsilon floor")
    eps_decay_steps: int = param(
        2_000_000,
        "online: time constant (env steps) of epsilon's exponential decay to eps_end (BTR: 8M frames)",
    )
    eps_disable_after: int | None = param(
        25_000_000, "online: env steps after which epsilon is 0 (BTR: 100M frames)"
    )
    batch_size: int = param(256, "transitions per gradient step")
    cql_alpha: float | None = param(None, "conservative regulariser weight (default 1 offline, 0 online)")
    checkpoint_every: int = param(5_000, "gradient steps between checkpoints")
    log_every: int = param(100, "gradient steps between metric rows")
    eval_every: int = param(0, "gradient steps between evaluations (0: only at the end)")
    eval_episodes: int | None = param(
        None, "episodes per evaluation (default: 8; fewer for a run under 200k env steps, one per 25k)"
    )
    eval_max_steps: int | None = param(
        None,
        "cap each evaluation at this many steps per env (default: scaled so it costs about the run's own env steps)",
    )
    seed: int = param(0, "seed of torch, numpy and the envs")
    device: str = param("auto", "auto, cpu, cuda, cuda:N")
    progress: bool = param(True, "progress bars")
    network: NetworkConfig = param(
        factory=lambda: NetworkConfig(n_actions=1), help="Architecture, with the windows K and S."
    )
    learner: LearnerConfig = param(factory=LearnerConfig, help="Optimiser and loss.")
    replay: ReplayConfig = param(
        factory=ReplayConfig, help="Replay size, n-step return, prioritisation and the batch mix."
    )
    acting: ActingConfig = param(factory=ActingConfig, help="how the actor thread steps its envs")

    def __post_init__(self) -> None:
        for name in ("num_envs", "replay_ratio", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.policy_lag < 0:
            raise ConfigError(f"policy_lag must be >= 0, got {self.policy_lag}")
        if self.acting.env_groups > 1 and self.policy_lag < 1:
            raise ConfigError("env groups act before a step is filed: give --policy-lag 1 or more")
        if self.write_back and self.save_store:
            raise ConfigError("give --write-back (append to --store) or --save-store PATH, not both")

    @property
    def is_online(self) -> bool:
        """Online when asked, or when an env is given without a store (learning from scratch)."""
        return self.online or (self.store is None and self.env is not None)

    @property
    def output_store(self) -> str | None:
        """Where played episodes go: --save-store, or --store with --write-back."""
        return self.store if self.write_back else self.save_store


def load_config(tree: dict, where: str = "config") -> TrainConfig:
    """The one strict loader: train (--config FILE), resume (config.json) and evaluation use it."""
    return from_json(TrainConfig, tree, where)


def save_config(config: TrainConfig, path: Path) -> None:
    """config.json, written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_json(config), indent=2))
    tmp.replace(path)
