"""Pieces several benchmarks share: the env arguments and raw stepping rate, a replay filled with random
episodes, a module as it was at a revision, and the closing JSON line of ratios with the machine and its load."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# rise and torch are imported inside the functions that use them: scale.py's stage processes measure their
# peak RSS, and the env benchmarks never touch torch

ROOT = Path(__file__).resolve().parents[1]


def fill(replay, envs: int, steps: int, dim: int, seed: int = 0) -> None:
    """``steps`` vector steps of random 84x84 frames, fp16 embeddings and episodes of 50-400 steps."""
    import torch

    from rise_data.envs import Step

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


def env_parser(doc: str, steps: int) -> argparse.ArgumentParser:
    """A parser with ``--env``, ``--envs``, ``--steps`` (default ``steps``) and ``--rounds``, ``doc`` as its help."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--rounds", type=int, default=3)
    return p


def raw_rate(spec: dict, envs: int, steps: int) -> float:
    """Steps/s of the family's raw vector env stepping with random actions from a seeded reset, nothing kept."""
    from rise_data.envs import make_env

    env = make_env(spec, num_envs=envs)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    n, t0 = 0, time.perf_counter()
    while n < steps:
        env.env.step(rng.integers(env.n_actions, size=envs))
        n += envs
    rate = n / (time.perf_counter() - t0)
    env.close()
    return rate


def machine(device: str = "cpu") -> str:
    """``DEVICE (N cores), load L``: where a number was measured, with the 1-minute load beside it."""
    return f"{device} ({os.cpu_count()} cores), load {os.getloadavg()[0]:.2f}"


def print_ratios(ratios: dict, device: str = "cpu", **extra) -> None:
    """The benchmark's last line: one JSON object of ``ratios``, ``extra`` and ``machine``."""
    print(json.dumps({"ratios": ratios, **extra, "machine": machine(device)}))
