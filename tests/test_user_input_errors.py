"""User input that rise refuses with one line (exit 2, a UserError), not a bug's traceback (exit 3): the
library entry points and CLI paths whose checks raised plain ValueErrors or crashed on a None."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rise_agent.cli import app as agent_app
from rise_agent.replay import Mixer
from rise_data.cli import app as data_app
from rise_data.cli_base import EXIT_USAGE
from rise_data.envs.tmaze import TMazeEnv
from rise_data.errors import UserError
from rise_data.torch import StoreDataset

runner = CliRunner()


def test_online_training_with_neither_store_nor_env_is_refused(tmp_path):
    res = runner.invoke(
        agent_app, ["train", "--online", "--env-steps", "10", "--run-dir", str(tmp_path / "r")]
    )
    assert res.exit_code == EXIT_USAGE, res.output
    assert "give --store STORE" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


def test_minari_export_to_a_bad_dataset_id_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    store = str(tmp_path / "t.zarr")
    assert runner.invoke(data_app, ["collect", "rise/TMaze-v0", store, "--steps", "32", "-q"]).exit_code == 0
    res = runner.invoke(data_app, ["export", store, "minari:bad id!"])
    assert res.exit_code == EXIT_USAGE, res.output
    assert "not a Minari dataset id" in res.output and "Traceback" not in res.output


def test_library_arguments_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="max_steps > length"):
        TMazeEnv(length=5, max_steps=5)
    with pytest.raises(UserError, match="needs a store or an online ring"):
        Mixer.resolve(None, has_store=False, has_ring=False)
    with pytest.raises(UserError, match="unknown dataset keys"):
        StoreDataset(str(tmp_path / "none.zarr"), keys=("nope",))
