"""Exit codes through the real CLIs: the user's mistakes exit 2 with one line, rise's bugs exit 3 with the
traceback, and every rise error class meant for the user is a UserError."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from typer.testing import CliRunner

import rise_data.share.stats
import rise_data.store.info
from rise_agent.training.checkpoint import CheckpointError
from rise_agent.training.rundir import RunError
from rise_data.cli import app
from rise_data.cli_base import EXIT_BUG, EXIT_INVALID, EXIT_USAGE, exit_code
from rise_data.collect.policies import PolicyError
from rise_data.encode.spec import EncoderError
from rise_data.envs.errors import EnvError
from rise_data.errors import UserError
from rise_data.options import ConfigError
from rise_data.store import CorruptStoreError, StoreError
from rise_data.store.lock import LockHeld

runner = CliRunner()


def test_every_error_class_is_a_user_error():
    classes = (EnvError, PolicyError, StoreError, CorruptStoreError, LockHeld, EncoderError, ConfigError)
    assert all(issubclass(c, UserError) for c in (*classes, RunError, CheckpointError))


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StoreError("x"), EXIT_USAGE),
        (CorruptStoreError("x"), EXIT_INVALID),
        (ConfigError("x"), EXIT_USAGE),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope"), EXIT_USAGE),
        (PermissionError(errno.EACCES, "Permission denied", "/ro"), EXIT_USAGE),
        (OSError(errno.ENOSPC, "No space left on device"), EXIT_USAGE),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), EXIT_BUG),  # no path: rise's own
        (OSError(errno.EIO, "Input/output error", "/x"), EXIT_BUG),
        (ValueError("operands could not be broadcast together"), EXIT_BUG),
        (KeyError("frame"), EXIT_BUG),
    ],
)
def test_exit_code_mapping(error, code):
    assert exit_code(error) == code


def _bug(error: Exception):
    def raise_it(*a, **k):
        raise error

    return raise_it


def test_a_bug_exits_3_with_its_traceback(cue_store, monkeypatch):
    """A numpy broadcast error inside a real command is rise's bug, not the user's: exit 3 and the traceback."""

    def broadcast(*a, **k):
        return np.zeros(3) + np.zeros(4)

    monkeypatch.setattr(rise_data.store.info, "store_info", broadcast)
    out = runner.invoke(app, ["info", cue_store])
    assert out.exit_code == EXIT_BUG, out.output
    assert "Traceback" in out.output and "broadcast" in out.output and "a bug in rise" in out.output

    monkeypatch.setattr(rise_data.share.stats, "stats", _bug(KeyError("embeddings")))
    out = runner.invoke(app, ["stats", cue_store, "--no-write"])
    assert out.exit_code == EXIT_BUG and "Traceback" in out.output and "KeyError" in out.output, out.output


def test_a_user_error_exits_2_with_one_line(cue_store, tmp_path):
    for args in (
        ["stats", cue_store, "--bins", "1"],  # a config's own check
        ["subset", cue_store, str(tmp_path / "s"), "--episodes", "0,x"],  # a library's check of the input
        ["info", str(tmp_path / "nope.zarr")],  # a missing path
        ["export", cue_store, str(tmp_path / "out.bin")],  # format not told by the name
    ):
        out = runner.invoke(app, args)
        lines = out.output.strip().splitlines()
        assert out.exit_code == EXIT_USAGE, (args, out.output)
        assert [ln for ln in lines if ln.startswith("error:")] == lines[-1:] and "Traceback" not in out.output
