"""The builder: from a TrainConfig to the run's parts (env spec, frozen encoder, network, learner, replay).

What the data decides is read from it here, once: the env's action count and agent view, the encoder's
embedding width. K and the frame stack come from the network config and nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from rise_agent.config import TrainConfig
from rise_agent.learner import Learner
from rise_agent.network import NetworkConfig
from rise_agent.replay import Replay
from rise_agent.training.precision import check_precision
from rise_data.encode.encoders import Encoder, EncoderRecipe, embedding_encoder, make_encoder
from rise_data.encode.spec import EncoderError
from rise_data.envs import EnvSpec, build_spec, parse_env_options
from rise_data.errors import UserError
from rise_data.store import Store, open_store

__all__ = ["Parts", "build", "pick_embedding"]

DEFAULT_ENCODER = "resnet18"  # the RISE paper's frozen encoder (ImageNet ResNet18)


@dataclass
class Parts:
    """Everything a training loop needs, built once."""

    spec: EnvSpec  # the env: the store's, or the one --env names, probed
    store: Store | None
    embedding: str | None  # the store's embeddings array the replay reads
    encoder_spec: EncoderRecipe | None  # what rebuilds the frozen encoder (None when K = 0)
    net: NetworkConfig
    learner: Learner
    replay: Replay
    encoder: Encoder | None = None  # built when acting or evaluating needs it

    def frozen_encoder(self, config: TrainConfig, device: torch.device) -> Encoder | None:
        """The frozen encoder, built once from its spec (weights sha256 checked)."""
        if self.encoder is None and self.encoder_spec is not None:
            where = f"the encoder of {self.store.path}" if self.store is not None else "the run's encoder"
            self.encoder = self.encoder_spec.build(weights=config.weights, where=where).to(device)
        return self.encoder


def allowed_plugins(config: TrainConfig) -> tuple[str, ...]:
    """Plug-ins the user named on the command line: --allow-plugin, --env or --encoder module:name.

    The run trusts them (:func:`rise_data.plugins.trusting`): a store or checkpoint naming one may rebuild it.
    """
    named = tuple(n for n in (config.env, config.encoder) if n and ":" in n)
    return (*config.allow_plugin, *named)


def pick_embedding(store: Store, name: str | None) -> str:
    """The embeddings array to train on: the one named, else the only complete one."""
    if name:
        if name not in store.embedding_names():
            raise UserError(
                f"{store.path} has no embeddings '{name}'; it has {store.embedding_names() or 'none'}"
            )
        return name
    done = [n for n in store.embedding_names() if int(store.embedding_meta(n)["rows_done"]) == store.rows]
    if len(done) != 1:
        raise UserError(
            f"{store.path} has complete embeddings {done or 'none'}; pass --embedding NAME"
            + ("" if done else f" after: rise-data encode {store.path} --encoder resnet18")
        )
    return done[0]


def _check_mode(config: TrainConfig) -> None:
    if config.store is None and config.env is None:
        raise UserError("give --store STORE (offline pretraining) or --env ID (online from scratch)")
    if config.is_online:
        if config.env_steps <= 0:
            raise UserError("online training needs --env-steps N > 0")
    elif config.updates <= 0:
        raise UserError("offline training needs --updates N > 0 (or --online to fine-tune in the env)")
    if config.write_back and config.store is None:
        raise UserError("--write-back appends to --store; give --store, or --save-store PATH")
    if config.output_store and not config.is_online:
        raise UserError("--save-store / --write-back keep played episodes: they need online training")


def _encoder(
    config: TrainConfig, store: Store | None, emb: str | None, spec: EnvSpec
) -> tuple[EncoderRecipe, Encoder | None]:
    """(EncoderRecipe, built Encoder or None) for K > 0: the store's, or the one --encoder names."""
    if store is not None and emb is not None:  # pick_embedding named the store's embeddings
        enc_spec = embedding_encoder(store, emb)
        if config.encoder and config.encoder != enc_spec.name:
            raise EncoderError(
                f"--encoder {config.encoder} differs from the encoder of embeddings '{emb}' ({enc_spec.name}); "
                "drop --encoder, or pass --embedding for embeddings made with it"
            )
        return enc_spec, None
    source = "frame" if spec.frame_shape else "obs"
    encoder = make_encoder(config.encoder or DEFAULT_ENCODER, weights=config.weights, source=source)
    return encoder.spec, encoder


def build(config: TrainConfig, device: torch.device, replay_dir: Path | None = None) -> Parts:
    """Open the store / env, resolve the encoder, and build the network, learner and replay."""
    _check_mode(config)
    check_precision(config.learner.precision, config.network.context_len, device)
    store = open_store(config.store) if config.store else None
    if store is not None:
        spec = EnvSpec.from_json(store.env)
        if config.env and config.env != spec.id:
            raise UserError(f"--env {config.env} differs from the store's env {spec.id}; drop --env")
        if config.env_option or config.wrapper:
            raise UserError("--env-option/--wrapper describe a new env; a store's env is the one it records")
    else:
        assert config.env is not None  # _check_mode: no store means an env
        options = parse_env_options(config.env_option)
        spec = build_spec(config.env, config.screen_size, wrappers=config.wrapper, **options)
    assert (
        spec.n_actions is not None and spec.obs_shape is not None
    )  # probed: build_spec and stores fill them
    h, w = spec.obs_shape
    k = config.network.context_len
    emb = pick_embedding(store, config.embedding) if (store is not None and k > 0) else None
    enc_spec, encoder = _encoder(config, store, emb, spec) if k > 0 else (None, None)
    net = dataclasses.replace(
        config.network,
        n_actions=spec.n_actions,
        embed_dim=enc_spec.dim if enc_spec else config.network.embed_dim,
        frame_hw=(h, w),
    )
    cql = config.cql_alpha if config.cql_alpha is not None else (0.0 if config.is_online else 1.0)
    learner = Learner(net, dataclasses.replace(config.learner, cql_alpha=cql), device)
    replay = _replay(config, net, store, emb, device, replay_dir)
    parts = Parts(spec, store, emb, enc_spec, net, learner, replay)
    if encoder is not None:
        parts.encoder = encoder.to(device)
    return parts


def _replay(config, net, store, emb, device, replay_dir) -> Replay:
    if (
        config.is_online
    ):  # the ring lives in the run directory: a resume (or a copy of the run) continues with it
        num_envs, rcfg = (
            config.num_envs,
            dataclasses.replace(config.replay, ring_dir=replay_dir and str(replay_dir)),
        )
    else:  # offline: the store is the only source
        num_envs, rcfg = 0, dataclasses.replace(config.replay, offline_fraction=None)
    # the replay's windows are the network's: K and the frame stack are owned by NetworkConfig
    if store is not None:
        return Replay.from_store(store.path, emb, rcfg, num_envs=num_envs, device=device, network=net)
    return Replay(rcfg, tuple(net.frame_hw), net.embed_dim, num_envs=num_envs, device=device, network=net)
