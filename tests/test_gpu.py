"""CUDA paths that CPU runs cannot reach: bf16/channels_last encode, NCCL ranks, the learner under bf16.

Each test compares the CUDA path with the fp32 CPU path it replaces, on the same inputs. They carry the
``gpu`` marker (``pytest -m gpu``) and skip cleanly where CUDA is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.store import open_store

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine: pytest -m gpu)"
    ),
]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cue(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("gpu") / "cue.zarr")
    collect(CollectConfig("rise/CueMemory-v0", path, episodes=4, num_envs=1, progress=False))
    return path


def _embeddings(store: str, name: str) -> np.ndarray:
    return np.asarray(open_store(store).embedding(name)[:], dtype=np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def test_encode_bf16_channels_last_agrees_with_cpu_fp32(cue, tmp_path):
    """ResNet18 (random init) under bf16 autocast + channels_last on CUDA against fp32 on the CPU."""
    stores = {}
    for device in ("cpu", "cuda"):
        stores[device] = str(tmp_path / f"{device}.zarr")
        shutil.copytree(cue, stores[device])
        encode(
            EncodeConfig(
                stores[device],
                encoder="resnet18",
                weights="untrained",
                device=device,
                name="r",
                progress=False,
            )
        )
    cpu, gpu = _embeddings(stores["cpu"], "r"), _embeddings(stores["cuda"], "r")
    assert not np.array_equal(cpu, gpu)  # really a different (bf16) path
    assert _cosines(cpu, gpu).min() >= 0.99


def test_nccl_rank_equals_one_process(cue, tmp_path):
    """torchrun with one NCCL rank (one GPU) writes what a plain CUDA encode writes."""
    ref, dist = str(tmp_path / "ref.zarr"), str(tmp_path / "dist.zarr")
    shutil.copytree(cue, ref)
    shutil.copytree(cue, dist)
    args = ["--encoder", "downsample", "--device", "cuda", "--batch-size", "16", "--quiet"]
    encode(EncodeConfig(ref, encoder="downsample", device="cuda", batch_size=16, progress=False))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"]
    cmd += ["-m", "rise_data.cli", "encode", dist, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    np.testing.assert_array_equal(_embeddings(dist, "downsample"), _embeddings(ref, "downsample"))


def test_learner_bf16_on_cuda_agrees_with_fp32():
    """The learner's bf16 autocast step on CUDA: loss within 0.5 % of fp32, float32 weights kept."""
    from test_learner import make_batch, small_config  # pytest puts tests/ on sys.path

    from rise_agent.learner import Learner, LearnerConfig

    k = 8
    fp32 = Learner(small_config(k), LearnerConfig(precision="fp32"), "cuda")
    bf16 = Learner(small_config(k), LearnerConfig(precision="bf16"), "cuda")
    bf16.online.load_state_dict(fp32.online.state_dict())
    bf16.target.load_state_dict(fp32.target.state_dict())
    batch = make_batch(k, b=64, seed=3)
    batch.__dict__.update({key: v.cuda() for key, v in vars(batch).items() if torch.is_tensor(v)})
    losses = []
    for learner in (fp32, bf16):
        torch.manual_seed(100)
        metrics, _ = learner.step(batch)
        losses.append(metrics["loss"])
        assert all(p.dtype == torch.float32 for p in learner.online.parameters())
    assert losses[1] == pytest.approx(losses[0], rel=5e-3)
