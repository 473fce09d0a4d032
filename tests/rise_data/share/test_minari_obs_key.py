"""``rise-data import ... --obs-key KEY`` on a Minari dataset whose observations are a Dict.

The dataset is a real one made here with Minari's own writer: two image keys (gray ``depth``, the first
in gymnasium's sorted key order, and RGB ``rgb``) and a vector ``state``; the import goes through the CLI.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from rise_data.cli import app
from rise_data.store import open_store

pytest.importorskip("minari")

DATASET = "team/dict-obs-v0"
LENGTHS = (7, 4)  # steps per episode


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    """A local Minari dataset with Dict observations; returns (source, per-episode observations)."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    rng = np.random.default_rng(0)
    space = gym.spaces.Dict(
        {
            "rgb": gym.spaces.Box(0, 255, (24, 32, 3), np.uint8),
            "depth": gym.spaces.Box(0, 255, (24, 32), np.uint8),
            "state": gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        }
    )
    buffers, observations = [], []
    for t in LENGTHS:
        obs = {
            "rgb": rng.integers(0, 256, (t + 1, 24, 32, 3), dtype=np.uint8),
            "depth": rng.integers(0, 256, (t + 1, 24, 32), dtype=np.uint8),
            "state": rng.uniform(-1, 1, (t + 1, 4)).astype(np.float32),
        }
        observations.append(obs)
        buffers.append(
            EpisodeBuffer(
                observations=obs,
                actions=rng.integers(0, 3, t),
                rewards=rng.normal(size=t).astype(np.float32),
                terminations=np.arange(t) == t - 1,
                truncations=np.zeros(t, bool),
                infos={},
            )
        )
    with warnings.catch_warnings():  # Minari warns about every optional field left unset (no env spec, ...)
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            DATASET, buffers, observation_space=space, action_space=gym.spaces.Discrete(3)
        )
    return f"minari:{DATASET}", observations


def test_obs_key_imports_that_key_and_leaves_out_the_rest(tmp_path, dataset):
    from rise_data.envs import to_agent_obs

    source, observations = dataset
    store = str(tmp_path / "depth.zarr")
    res = CliRunner().invoke(
        app, ["import", source, store, "--obs-key", "depth", "--screen-size", "16", "-q"]
    )
    assert res.exit_code == 0, res.output
    s = open_store(store)
    assert s.rows == sum(t + 1 for t in LENGTHS) and s.num_episodes == len(LENGTHS)
    assert not s.has_frames  # gray images: obs only
    want = np.concatenate([to_agent_obs(o["depth"], 16) for o in observations])
    np.testing.assert_array_equal(s.read("obs"), want)
    source_record = s.env["source"]
    assert source_record["observation_key"] == "depth"
    assert source_record["dropped_keys"] == ["rgb", "state"]
    check = CliRunner().invoke(app, ["check", store])
    assert check.exit_code == 0, check.output


def test_obs_key_of_rgb_images_keeps_them_as_frames(tmp_path, dataset):
    source, observations = dataset
    store = str(tmp_path / "rgb.zarr")
    res = CliRunner().invoke(app, ["import", source, store, "--obs-key", "rgb", "-q"])
    assert res.exit_code == 0, res.output
    s = open_store(store)
    np.testing.assert_array_equal(s.read("frame"), np.concatenate([o["rgb"] for o in observations]))
    assert s.env["source"]["dropped_keys"] == ["depth", "state"]


def test_without_obs_key_the_refusal_names_the_option(tmp_path, dataset):
    source, _ = dataset
    res = CliRunner().invoke(app, ["import", source, str(tmp_path / "a.zarr")])
    assert res.exit_code == 2, res.output
    assert "--obs-key depth (image keys: depth, rgb)" in res.output and "rgb, state" in res.output


@pytest.mark.parametrize(
    ("key", "says"),
    [("pixels", "no key 'pixels'; the keys are depth, rgb, state (images: depth, rgb)"),
     ("state", "observation 'state' is Box")],
)  # fmt: skip
def test_a_wrong_key_is_one_line_listing_the_keys(tmp_path, dataset, key, says):
    source, _ = dataset
    out = subprocess.run(
        [sys.executable, "-m", "rise_data.cli", "import", source, str(tmp_path / "x.zarr"), "--obs-key", key],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], out.stderr
    assert not (tmp_path / "x.zarr").exists() or not any((tmp_path / "x.zarr").iterdir())
