"""Checkpoints: the one schema (:class:`Checkpoint`), atomic writes, ``weights_only`` loads, RNG capture.

:class:`Checkpoint` is what a checkpoint holds, written (``to_payload``) and read (``from_payload``) only
here: training saves and resumes through it, evaluation and collection policies load agents through it.
A checkpoint is one ``torch.save`` file holding a dict of tensors, state dicts, ints, floats, bools,
strings and None only (configs and provenance go in as JSON strings), so ``torch.load(...,
weights_only=True)`` reads it and loading never unpickles arbitrary objects. The file is written to
``<path>.tmp`` and moved over ``path`` with ``os.replace``: a crash mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rise_agent.network import NetworkConfig
from rise_data.encode.encoders import EncoderRecipe
from rise_data.encode.spec import EncoderError
from rise_data.errors import UserError
from rise_data.options import ConfigError, from_json
from rise_data.store.durable import publish

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

_SCALARS = (bool, int, float, str, type(None))


class CheckpointError(UserError):
    """A checkpoint cannot be written or read; the one-line message says why."""


def _one_line(text: object, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _check_payload(obj: Any, where: str) -> None:
    """Refuse anything ``weights_only=True`` could not load back (numpy values, dataclasses, ...)."""
    if isinstance(obj, (torch.Tensor, *_SCALARS)):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, str | int):
                raise CheckpointError(f"checkpoint key {where}[{k!r}] must be a str or int")
            _check_payload(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _check_payload(v, f"{where}[{i}]")
        return
    raise CheckpointError(
        f"checkpoint value {where} is a {type(obj).__name__}; store tensors, state dicts, numbers, "
        "strings or JSON strings only"
    )


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` atomically and durably to ``path`` (``path.tmp``, then :func:`publish`)."""
    path = Path(path)
    _check_payload(payload, "payload")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
    publish(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True`` onto ``device``; one-line CheckpointError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, weights_only=True, map_location=device)
    except Exception as e:  # truncated/corrupt bytes, or objects weights_only refuses
        raise CheckpointError(f"cannot read checkpoint {path}: {_one_line(e, 200)}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a dict")
    return obj


def capture_rng(rng: np.random.Generator | None = None, python: bool = True) -> dict:
    """Torch (CPU and CUDA), numpy ``Generator`` and optionally ``random`` states, checkpoint-safe."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    if rng is not None:
        state["numpy"] = json.dumps(rng.bit_generator.state)
    if python:
        version, internal, gauss = random.getstate()
        state["python"] = json.dumps([version, list(internal), gauss])
    return state


def restore_rng(state: Mapping) -> np.random.Generator | None:
    """Restore what :func:`capture_rng` captured; returns the numpy ``Generator`` (None if none was captured)."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    if "python" in state:
        version, internal, gauss = json.loads(state["python"])
        random.setstate((version, tuple(internal), gauss))
    if "numpy" not in state:
        return None
    bits = json.loads(state["numpy"])
    bit_generator = getattr(np.random, bits["bit_generator"])()
    bit_generator.state = bits
    return np.random.Generator(bit_generator)


# ---------------------------------------------------------------------------------------------------
# The schema

_JSON_KEYS = ("network_config", "encoder", "env", "train_config", "counters")  # stored as JSON strings
_REQUIRED = ("network", "network_config", "env")  # what an agent needs; the rest is a training run's


@dataclass
class Checkpoint:
    """What a checkpoint holds. An agent (network, its config, encoder, env) and, from training, the rest."""

    network: dict  # the online network's state dict
    network_config: NetworkConfig
    encoder: EncoderRecipe | None  # the frozen encoder (None when K = 0)
    env: dict  # the env spec (JSON) the agent acts in
    train_config: dict | None = None  # the run's TrainConfig as JSON
    counters: dict | None = None  # the run's counters as JSON
    learner: dict | None = None  # Learner.state_dict (target, Adam, update count)
    rng: dict | None = None  # capture_rng
    replay: dict | None = None  # Replay.state_dict

    def to_payload(self) -> dict:
        """The ``torch.save`` dict: tensors, state dicts and JSON strings only (``weights_only`` loads it)."""
        out: dict = {
            "network": self.network,
            "network_config": json.dumps(dataclasses.asdict(self.network_config)),
        }
        out["encoder"] = json.dumps(self.encoder.to_json() if self.encoder is not None else None)
        out["env"] = json.dumps(self.env)
        for key in ("train_config", "counters"):
            if getattr(self, key) is not None:
                out[key] = json.dumps(getattr(self, key))
        for key in ("learner", "rng", "replay"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_payload(cls, obj: dict, where: str) -> Checkpoint:
        """Inverse of :meth:`to_payload`; a one-line CheckpointError names what does not fit."""
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise CheckpointError(f"checkpoint {where} lacks {missing}: not a rise-agent checkpoint")
        unknown = sorted(set(obj) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise CheckpointError(f"checkpoint {where} has unknown keys {unknown}: written by another rise?")
        tree = {k: _json(obj[k], k, where) if k in _JSON_KEYS else v for k, v in obj.items()}
        tree["network_config"] = _network_config(tree["network_config"], where)
        tree["encoder"] = _encoder(tree.get("encoder"), where)
        return cls(**tree)

    def save(self, path: str | os.PathLike) -> Path:
        """Write this checkpoint atomically (:func:`save_checkpoint` of :meth:`to_payload`)."""
        return save_checkpoint(path, self.to_payload())

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> Checkpoint:
        """Read and parse a checkpoint (``weights_only=True``); one-line CheckpointError if it does not fit."""
        return cls.from_payload(load_checkpoint(path, device), str(path))


def _json(text: Any, key: str, where: str) -> Any:
    if not isinstance(text, str):
        raise CheckpointError(f"checkpoint {where}: '{key}' is a {type(text).__name__}, not a JSON string")
    try:
        return json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {where}: '{key}' is not JSON ({e})") from None


def _network_config(tree: Any, where: str) -> NetworkConfig:
    try:
        return from_json(NetworkConfig, tree, "network_config")
    except (ConfigError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {where}: its network config does not load ({e}): written by another rise?"
        ) from None


def _encoder(record: Any, where: str) -> EncoderRecipe | None:
    if record is None:
        return None
    try:
        return EncoderRecipe.from_json(record)
    except EncoderError as e:
        raise CheckpointError(f"checkpoint {where}: its encoder record does not parse ({e})") from None
