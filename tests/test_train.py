"""Training through the real CLI: offline and online runs finish and write checkpoints and metrics; resume."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rise_agent.checkpoint import load_checkpoint
from rise_agent.cli import app, config_from_json
from rise_agent.learner import Learner
from rise_agent.train import train
from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode

runner = CliRunner()
SMALL = [
    "--batch-size", "8", "--context-len", "8", "--lstm-hidden", "16", "--impala-width", "1", "--hidden", "32",
    "--log-every", "2", "--eval-episodes", "1", "--eval-max-steps", "10", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def probe_store(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("train") / "probe.zarr")
    collect(
        CollectConfig(
            "rise/CueMemory-v0", path, episodes=4, envs=2, seed=0, env_options={"delay": 6}, progress=False
        )
    )
    encode(EncodeConfig(store=path, encoder="downsample", progress=False))
    return path


def _ok(out):
    assert out.exit_code == 0, out.output
    return out.output


def test_offline_then_online_then_eval(probe_store, tmp_path):
    pre = tmp_path / "pre"
    _ok(
        runner.invoke(app, ["train", "--store", probe_store, "--run-dir", str(pre), "--updates", "6", *SMALL])
    )
    for name in ("checkpoint.pt", "config.json", "train.csv", "eval.csv", "learning_curve.png"):
        assert (pre / name).exists(), name
    ck = load_checkpoint(pre / "checkpoint.pt", "cpu")
    assert json.loads(ck["counters"])["updates"] == 6
    assert json.loads(ck["encoder"])["name"] == "downsample"
    assert config_from_json(json.loads((pre / "config.json").read_text())).updates == 6
    ev = (pre / "eval.csv").read_text().splitlines()
    assert int(ev[1].split(",")[ev[0].split(",").index("steps")]) <= 10  # --eval-max-steps caps evaluation
    rows = (pre / "train.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and "loss" in rows[0] and "gate_mean" in rows[0]
    fine = tmp_path / "fine"
    args = ["--online", "--env-steps", "48", "--num-envs", "4", "--learning-starts", "0", "--replay-ratio", "4",
            "--replay-capacity", "512", "--offline-fraction", "0.5", "--init-checkpoint", str(pre / "checkpoint.pt")]  # fmt: skip
    _ok(runner.invoke(app, ["train", "--store", probe_store, "--run-dir", str(fine), *args, *SMALL]))
    ck = load_checkpoint(fine / "checkpoint.pt", "cpu")
    counters = json.loads(ck["counters"])
    assert counters["env_steps"] == 48 and counters["updates"] == 12 and counters["episodes"] >= 4
    assert (fine / "episodes.csv").exists()
    assert json.loads((fine / "config.json").read_text())["replay"]["offline_fraction"] == 0.5
    out = _ok(
        runner.invoke(
            app,
            ["eval", str(fine / "checkpoint.pt"), "--episodes", "3", "--record", str(tmp_path / "ep.gif")],
        )
    )
    assert "3 episodes" in out and (tmp_path / "ep.gif").stat().st_size > 0


def test_refusals(probe_store, tmp_path):
    run = tmp_path / "r"
    _ok(
        runner.invoke(app, ["train", "--store", probe_store, "--run-dir", str(run), "--updates", "2", *SMALL])
    )
    out = runner.invoke(
        app, ["train", "--store", probe_store, "--run-dir", str(run), "--updates", "2", *SMALL]
    )
    assert out.exit_code == 2 and "--resume" in out.output
    out = runner.invoke(
        app,
        [
            "train",
            "--store",
            probe_store,
            "--run-dir",
            str(tmp_path / "x"),
            "--embedding",
            "nope",
            "--updates",
            "2",
            *SMALL,
        ],
    )
    assert out.exit_code == 2 and "nope" in out.output
    out = runner.invoke(app, ["eval", str(tmp_path / "missing.pt")])
    assert out.exit_code == 2 and "error:" in out.output


def test_interrupt_then_resume_continues_counters(probe_store, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _ok(
        runner.invoke(app, ["train", "--store", probe_store, "--run-dir", str(run), "--updates", "1", *SMALL])
    )
    config = config_from_json(json.loads((run / "config.json").read_text()))
    import dataclasses
    import shutil

    shutil.rmtree(run)
    config = dataclasses.replace(config, updates=10, checkpoint_every=2)
    real_step = Learner.step
    calls = {"n": 0}

    def stop_after_five(self, batch):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # as Ctrl-C or SIGTERM would
        return real_step(self, batch)

    monkeypatch.setattr(Learner, "step", stop_after_five)
    train(config)
    assert json.loads(load_checkpoint(run / "checkpoint.pt", "cpu")["counters"])["updates"] == 5
    monkeypatch.setattr(Learner, "step", real_step)
    out = train(config, resume=True)
    assert out["updates"] == 10
    ck = load_checkpoint(run / "checkpoint.pt", "cpu")
    assert json.loads(ck["counters"])["updates"] == 10
    assert ck["learner"]["updates"] == 10


def test_train_from_packed_store_with_small_screen(tmp_path):
    """A store read straight from its packed zip; the network takes the store's agent view (42x42 here)."""
    from rise_data.pack import PackConfig, pack

    src = str(tmp_path / "small.zarr")
    collect(
        CollectConfig(
            "rise/CueMemory-v0",
            src,
            episodes=3,
            envs=1,
            screen_size=42,
            env_options={"delay": 4},
            progress=False,
        )
    )
    encode(EncodeConfig(store=src, encoder="downsample", progress=False))
    zipped = str(tmp_path / "small.zip")
    pack(PackConfig(store=src, output=zipped))
    run = tmp_path / "run"
    _ok(runner.invoke(app, ["train", "--store", zipped, "--run-dir", str(run), "--updates", "2", *SMALL]))
    ck = load_checkpoint(run / "checkpoint.pt", "cpu")
    assert json.loads(ck["network_config"])["frame_hw"] == [42, 42]


def test_online_write_back_appends_episodes_with_embeddings(tmp_path):
    import numpy as np
    import torch

    from rise_data.check import check_store
    from rise_data.encoders import make_encoder
    from rise_data.store import open_store

    path = str(tmp_path / "wb.zarr")
    collect(
        CollectConfig("rise/CueMemory-v0", path, episodes=2, envs=1, env_options={"delay": 4}, progress=False)
    )
    encode(EncodeConfig(store=path, encoder="downsample", progress=False))
    before = open_store(path).rows
    args = ["--online", "--env-steps", "40", "--num-envs", "2", "--learning-starts", "0", "--replay-ratio", "8",
            "--replay-capacity", "256", "--write-back"]  # fmt: skip
    _ok(runner.invoke(app, ["train", "--store", path, "--run-dir", str(tmp_path / "run"), *args, *SMALL]))
    s = open_store(path)
    assert s.rows > before and check_store(path) == []
    assert s.embedding_meta("downsample")["rows_done"] == s.rows
    new = s.embedding("downsample")[before:]
    ref = make_encoder("downsample")(torch.from_numpy(s.read("frame", before))).numpy().astype(np.float16)
    np.testing.assert_allclose(new.astype(np.float32), ref.astype(np.float32), atol=2e-3)
    assert s.meta["history"][-1]["command"].startswith("rise-agent train --online")
