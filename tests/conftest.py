"""Shared fixtures: one small real Pong store per session, copied where a test writes to it."""

from __future__ import annotations

import shutil

import pytest

from rise_data.collect import CollectConfig, collect


@pytest.fixture(scope="session")
def pong_store(tmp_path_factory) -> str:
    """A real ALE/Pong-v5 store of 400+ steps from 4 envs (read-only: copy it before writing)."""
    path = str(tmp_path_factory.mktemp("stores") / "pong.zarr")
    collect(CollectConfig("ALE/Pong-v5", path, steps=400, envs=4, seed=0, progress=False))
    return path


@pytest.fixture()
def pong_copy(pong_store, tmp_path) -> str:
    dst = str(tmp_path / "pong.zarr")
    shutil.copytree(pong_store, dst)
    return dst


@pytest.fixture(scope="session")
def cue_store(tmp_path_factory) -> str:
    """A small rise/CueMemory-v0 store (3 episodes, RGB frames; read-only: copy it before writing)."""
    path = str(tmp_path_factory.mktemp("stores") / "cue.zarr")
    collect(CollectConfig("rise/CueMemory-v0", path, episodes=3, envs=1, progress=False))
    return path


@pytest.fixture()
def cue_copy(cue_store, tmp_path) -> str:
    dst = str(tmp_path / "cue.zarr")
    shutil.copytree(cue_store, dst)
    return dst
