"""Pieces several benchmarks share: a replay filled with random episodes, and a module as it was at a revision."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from rise_data.envs import Step

ROOT = Path(__file__).resolve().parents[1]


def fill(replay, envs: int, steps: int, dim: int, seed: int = 0) -> None:
    """``steps`` vector steps of random 84x84 frames, fp16 embeddings and episodes of 50-400 steps."""
    rng = np.random.default_rng(seed)
    replay.add_first(rng.integers(0, 256, (envs, 84, 84), dtype=np.uint8), torch.randn(envs, dim).half())
    left, done = rng.integers(50, 400, envs), np.zeros(envs, bool)
    for _ in range(steps):
        first = done
        left = np.where(first, rng.integers(50, 400, envs), left - 1)
        term = (left == 0) & ~first
        obs = rng.integers(0, 256, (envs, 84, 84), dtype=np.uint8)
        step = Step(obs, None, rng.normal(size=envs).astype(np.float32), term, np.zeros(envs, bool), first)
        replay.add(rng.integers(0, 6, envs), step, torch.randn(envs, dim).half())
        done = term


def module_at(rev: str, path: str, name: str):
    """The file ``path`` of the repository as it was at ``rev``, imported as module ``name``."""
    src = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(src)
    spec = importlib.util.spec_from_file_location(name, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
