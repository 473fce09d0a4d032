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
