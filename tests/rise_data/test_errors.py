"""One line naming the problem and the fix, and a documented exit code, for each user-caused failure of
rise-data (issue 12, item 7): through the real command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rise_data.cli import app
from rise_data.store import open_store
from rise_data.store.lock import store_lock

runner = CliRunner()


def one_line_error(args: list[str], code: int = 2) -> str:
    out = runner.invoke(app, args)
    lines = [ln for ln in out.output.strip().splitlines() if ln.startswith("error:")]
    assert out.exit_code == code and len(lines) == 1, out.output
    assert "Traceback" not in out.output, out.output
    return lines[0]


def test_writing_onto_a_regular_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert "is a file" in one_line_error(
        ["collect", "rise/CueMemory-v0", str(f), "--episodes", "1", "--quiet"]
    )
    assert "is a file" in one_line_error(["encode", str(f), "--encoder", "downsample", "--quiet"])
    assert "is a file" in one_line_error(["seal", str(f)])


def test_collect_into_a_packed_zip(copy, tmp_path):
    zp = str(tmp_path / "cue.zip")
    runner.invoke(app, ["pack", copy, zp, "-q"])
    assert "read-only" in one_line_error(["collect", "rise/CueMemory-v0", zp, "--episodes", "1", "--quiet"])
    assert "read-only" in one_line_error(["seal", zp])


def test_encode_dtype_the_validator_agrees_with_the_store(copy):
    msg = one_line_error(["encode", copy, "--encoder", "downsample", "--dtype", "bfloat16", "--quiet"])
    assert "float16" in msg and "float32" in msg
    assert (
        runner.invoke(
            app, ["encode", copy, "--encoder", "downsample", "--dtype", "float32", "--quiet"]
        ).exit_code
        == 0
    )


def test_unknown_env_option_names_the_known_ones(tmp_path):
    msg = one_line_error(
        ["collect", "ALE/Pong-v5", str(tmp_path / "p.zarr"), "--steps", "8", "--env-option", "x=1"]
    )
    assert "frameskip" in msg and "repeat_action_probability" in msg


def test_truncated_array_metadata(copy):
    meta = Path(copy) / "obs" / "zarr.json"
    meta.write_text(meta.read_text()[:30])
    assert str(meta) in one_line_error(
        ["encode", copy, "--encoder", "downsample", "--quiet", "--source", "obs"], 1
    )


def test_second_writer_refused_by_my_commands(copy, tmp_path):
    with store_lock(copy, "another writer"):
        for args in (["seal", copy], ["stats", copy], ["card", copy, "--id", "cue-v0"], ["repair", copy]):
            msg = one_line_error(args)
            assert "is being written by pid" in msg and "another writer" in msg, args
    out = str(tmp_path / "out.zarr")
    with store_lock(out, "another writer"):
        assert "another writer" in one_line_error(["subset", copy, out, "--first", "1"])
        assert "another writer" in one_line_error(["merge", copy, copy, "-o", out])
    assert runner.invoke(app, ["seal", copy, "-q"]).output == ""  # free again


def test_repair_trims_crash_tails(copy):
    s = open_store(copy, mode="a")
    rows = s.rows
    for _name, arr in s.step_arrays():  # what a writer killed mid-append leaves: rows past the commit
        arr.resize((rows + 7, *arr.shape[1:]))
    out = runner.invoke(app, ["repair", copy])
    assert out.exit_code == 0 and "dropped 7 uncommitted rows" in out.output
    s = open_store(copy)
    assert all(arr.shape[0] == rows for _, arr in s.step_arrays())
    assert runner.invoke(app, ["check", copy, "-q"]).exit_code == 0


def test_quiet_prints_nothing(copy, tmp_path):
    for args in (
        ["seal", copy, "-q"],
        ["pack", copy, str(tmp_path / "q.zip"), "-q"],
        ["export", copy, str(tmp_path / "q.h5"), "-q"],
        ["import", str(tmp_path / "q.h5"), str(tmp_path / "q.zarr"), "-q"],
        ["stats", copy, "-q"],
        ["encode", copy, "--encoder", "downsample", "--quiet"],
    ):
        out = runner.invoke(app, args)
        assert out.exit_code == 0 and out.output == "", (args, out.output)


def _read_only(args: list[str], folder: Path) -> subprocess.CompletedProcess:
    """Run rise-data with ``folder`` bind-mounted read-only, in a private mount namespace (needs root)."""
    code = "import sys; from rise_data.cli import app; sys.argv[0] = 'rise-data'; app()"
    cmd = " ".join(
        [f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && exec", sys.executable]
    )
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", f'{cmd} -c "{code}" "$@"', "sh", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_read_only_store_and_folder(copy, tmp_path):
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no mount namespaces here (needs root): cannot make a real read-only folder")
    folder = Path(copy).parent
    cases = [
        ["encode", copy, "--encoder", "downsample", "--quiet"],
        ["collect", "rise/CueMemory-v0", copy, "--episodes", "1", "--quiet"],
        ["collect", "rise/CueMemory-v0", str(folder / "new.zarr"), "--episodes", "1", "--quiet"],
        ["pack", copy, str(folder / "ro.zip"), "-q"],
        ["seal", copy],
    ]
    for args in cases:
        out = _read_only(args, folder)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), (args, out.stderr)
        assert "writable" in lines[0] or "read-only" in lines[0], lines[0]
    assert not (folder / "new.zarr").exists() and not (folder / "ro.zip").exists()


def _foreign_minari(root: Path, env_kwargs: dict) -> str:
    """A Minari dataset as another team would make it: Dict observations (RGB image + direction)."""
    import dataclasses

    import ale_py
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    gym.register_envs(ale_py)
    spec = dataclasses.replace(
        gym.spec("ALE/Pong-v5"), kwargs={**gym.spec("ALE/Pong-v5").kwargs, **env_kwargs}
    )
    rng = np.random.default_rng(0)
    space = gym.spaces.Dict(
        {"image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8), "direction": gym.spaces.Discrete(4)}
    )
    t = 5
    buf = EpisodeBuffer(
        observations={
            "image": rng.integers(0, 255, (t + 1, 16, 16, 3), dtype=np.uint8),
            "direction": np.zeros(t + 1, np.int64),
        },
        actions=rng.integers(0, 3, t),
        rewards=np.ones(t, np.float32),
        terminations=np.array([0, 0, 0, 0, 1], bool),
        truncations=np.zeros(t, bool),
        infos={},
    )
    import os

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    minari.create_dataset_from_buffers(
        "other/team-v0", [buf], env=spec, observation_space=space, action_space=gym.spaces.Discrete(3)
    )
    return "minari:other/team-v0"


def test_minari_import_keeps_env_kwargs_and_refuses_extra_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    source = _foreign_minari(tmp_path / "minari", {"frameskip": 5, "repeat_action_probability": 0.0})
    msg = one_line_error(["import", source, str(tmp_path / "a.zarr")])
    assert "direction" in msg and "--drop-keys" in msg
    out = runner.invoke(app, ["import", source, str(tmp_path / "b.zarr"), "--drop-keys", "-q"])
    assert out.exit_code == 0, out.output
    env = open_store(str(tmp_path / "b.zarr")).env
    assert env["kwargs"]["frameskip"] == 5 and env["kwargs"]["repeat_action_probability"] == 0.0
    assert env["source"]["dropped_keys"] == ["direction"]
    assert env["source"]["env_spec"]["kwargs"]["frameskip"] == 5
