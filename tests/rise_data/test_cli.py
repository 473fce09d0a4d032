"""The CLIs, in-process: help (every rise-agent train option has some), version, the happy path, one-line errors."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from rise_agent.cli import app as agent_app
from rise_data.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["collect"], ["encode"], ["info"], ["check"]])
def test_help(cmd):
    out = runner.invoke(app, [*cmd, "--help"])
    assert out.exit_code == 0 and "Usage" in out.output


def _params(cli, name: str) -> dict:
    return {p.opts[0]: p for p in typer.main.get_command(cli).commands[name].params}


def test_agent_cli_vocabulary():
    train, ev = _params(agent_app, "train"), _params(agent_app, "eval")
    assert "--num-envs" in train and "--num-envs" in ev and "--envs" not in train  # one name for it
    assert "--quiet" in train and "--quiet" in ev and "--no-progress" in train["--progress"].secondary_opts
    for opt in ("--env", "--encoder", "--wrapper", "--save-store", "--allow-plugin", "--eps-disable-after"):
        assert len(train[opt].help) > 20, opt
    out = runner.invoke(agent_app, ["train", "--help"])
    assert out.exit_code == 0 and "--allow-plugin" in out.output and "--quiet" in out.output


def test_version():
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.startswith("rise-data ")


def test_collect_encode_info_check(tmp_path):
    path = str(tmp_path / "p.zarr")
    out = runner.invoke(
        app, ["collect", "rise/CueMemory-v0", path, "--episodes", "3", "--envs", "2", "--quiet"]
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["encode", path, "--encoder", "downsample", "--quiet"])
    assert out.exit_code == 0 and out.output == "", out.output  # --quiet: nothing but errors
    out = runner.invoke(app, ["encode", path, "--encoder", "downsample"])
    assert "embeddings 'downsample' are already complete" in out.output
    out = runner.invoke(app, ["info", path])
    assert out.exit_code == 0 and "downsample" in out.output and "96 steps in 3 episodes" in out.output
    out = runner.invoke(app, ["info", path, "--json"])
    assert out.exit_code == 0 and '"episodes": 3' in out.output
    out = runner.invoke(app, ["check", path])
    assert out.exit_code == 0 and "ok" in out.output


def _one_line_error(out) -> str:
    lines = [ln for ln in out.output.strip().splitlines() if ln.startswith("error:")]
    assert out.exit_code == 2, out.output
    assert len(lines) == 1, out.output
    return lines[0]


def test_errors_are_one_line(tmp_path, monkeypatch):
    assert "does not exist" in _one_line_error(runner.invoke(app, ["info", str(tmp_path / "nope.zarr")]))
    assert "unknown env id" in _one_line_error(
        runner.invoke(app, ["collect", "Nope-v0", str(tmp_path / "x.zarr"), "--steps", "5"])
    )
    assert "--steps" in _one_line_error(
        runner.invoke(app, ["collect", "ALE/Pong-v5", str(tmp_path / "x.zarr")])
    )
    path = str(tmp_path / "p.zarr")
    runner.invoke(app, ["collect", "rise/CueMemory-v0", path, "--episodes", "1", "--quiet"])
    # resnet18 with no weights anywhere and no network: names the file to provide
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    import urllib.error

    import torch.hub

    def offline(*a, **k):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    msg = _one_line_error(runner.invoke(app, ["encode", path, "--encoder", "resnet18", "--quiet"]))
    assert "resnet18-f37072fd.pth" in msg and "--weights" in msg
    msg = _one_line_error(
        runner.invoke(app, ["encode", path, "--encoder", "resnet18", "--weights", str(tmp_path / "no.pth")])
    )
    assert "does not exist" in msg
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    assert "resnet18" in _one_line_error(
        runner.invoke(app, ["encode", path, "--encoder", "resnet18", "--weights", str(bad)])
    )
    assert "unknown encoder" in _one_line_error(runner.invoke(app, ["encode", path, "--encoder", "nope"]))
    (tmp_path / "p.zarr" / "zarr.json").write_text("{")
    out = runner.invoke(app, ["check", path])
    assert out.exit_code == 1 and "INVALID" in out.output
