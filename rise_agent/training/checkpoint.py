"""Checkpoints: atomic writes, ``weights_only`` loads, and RNG capture/restore.

A checkpoint is one ``torch.save`` file holding a dict of tensors, state dicts, ints, floats, bools,
strings and None only (configs and provenance go in as JSON strings), so ``torch.load(...,
weights_only=True)`` reads it and loading never unpickles arbitrary objects. The file is written to
``<path>.tmp`` and moved over ``path`` with ``os.replace``: a crash mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CheckpointError", "capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint"]

_SCALARS = (bool, int, float, str, type(None))


class CheckpointError(ValueError):
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
    """Write ``payload`` atomically to ``path`` (via ``path.tmp`` + fsync + ``os.replace``)."""
    path = Path(path)
    _check_payload(payload, "payload")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())  # the rename must never publish a file whose bytes are not on disk
    os.replace(tmp, path)
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
