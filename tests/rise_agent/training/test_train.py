"""Training through the real CLI: offline, online from a store and from scratch, run directories, resume."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rise_agent.cli import app
from rise_agent.config import TrainConfig, load_config
from rise_agent.learner import Learner
from rise_agent.training.checkpoint import load_checkpoint
from rise_agent.training.reference import updates_owed
from rise_agent.training.train import train
from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.store import open_store
from rise_data.store.check import check_store

runner = CliRunner()
SMALL = [
    "--batch-size", "8", "--context-len", "8", "--lstm-hidden", "16", "--impala-channels", "8,16,16",
    "--hidden", "32", "--log-every", "2", "--eval-episodes", "1", "--eval-max-steps", "10", "--no-progress",
]  # fmt: skip
PROBE = "rise/CueMemory-v0"


@pytest.fixture(scope="module")
def probe_store(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("train") / "probe.zarr")
    collect(
        CollectConfig(PROBE, path, episodes=4, num_envs=2, seed=0, env_options={"delay": 6}, progress=False)
    )
    encode(EncodeConfig(store=path, encoder="downsample", progress=False))
    return path


def _ok(out):
    assert out.exit_code == 0, out.output
    return out.output


def _counters(run) -> dict:
    return json.loads(load_checkpoint(run / "checkpoint.pt", "cpu")["counters"])


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
    assert load_config(json.loads((pre / "config.json").read_text())).updates == 6
    ev = (pre / "eval.csv").read_text().splitlines()
    assert int(ev[1].split(",")[ev[0].split(",").index("steps")]) <= 10  # --eval-max-steps caps evaluation
    rows = (pre / "train.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and "loss" in rows[0] and "gate_mean" in rows[0]
    fine = tmp_path / "fine"
    args = ["--online", "--env-steps", "48", "--num-envs", "4", "--learning-starts", "0", "--replay-ratio", "4",
            "--replay-capacity", "512", "--offline-fraction", "0.5", "--init-checkpoint", str(pre / "checkpoint.pt")]  # fmt: skip
    _ok(runner.invoke(app, ["train", "--store", probe_store, "--run-dir", str(fine), *args, *SMALL]))
    counters = _counters(fine)
    # learning starts once a batch of online transitions is in; from that vector step on, one update per 4 env steps
    assert counters["env_steps"] == 48 and 8 <= counters["learning_started_at"] <= 20
    assert (
        counters["updates"] == (48 - counters["learning_started_at"] + 4) // 4 and counters["episodes"] >= 4
    )
    assert counters["max_policy_lag"] <= 1
    assert json.loads((fine / "config.json").read_text())["replay"]["offline_fraction"] == 0.5
    out = _ok(
        runner.invoke(
            app,
            ["eval", str(fine / "checkpoint.pt"), "--episodes", "3", "--record", str(tmp_path / "ep.gif")],
        )
    )
    assert "3 episodes" in out and (tmp_path / "ep.gif").stat().st_size > 0


def test_train_csv_keeps_every_metric_the_learner_returns(probe_store, tmp_path, monkeypatch):
    """Columns follow the learner's metrics dict, also keys that appear later (rows before them stay empty),
    and the curves get the context stream's failure-signature panel (K > 0)."""
    import csv

    from rise_agent.training.curves import signatures

    real_step, seen = Learner.step, set()

    def step(self, batch):
        metrics, prio = real_step(self, batch)
        metrics = {**metrics, "gate_saturation": 0.25, "lstm_mean": 0.1, "lstm_std": 0.5}
        if self.updates > 2:  # a metric reported only from some step on
            metrics["late_metric"] = 1.5
        seen.update(metrics)
        return metrics, prio

    monkeypatch.setattr(Learner, "step", step)
    run = tmp_path / "run"
    _ok(
        runner.invoke(app, ["train", "--store", probe_store, "--run-dir", str(run), "--updates", "6", *SMALL])
    )
    with (run / "train.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert seen <= set(rows[0]) and len(rows) == 3  # every key the learner returned is a column
    assert rows[0]["late_metric"] == "" and [r["late_metric"] for r in rows[1:]] == ["1.5", "1.5"]
    assert {"gate_saturation", "lstm_mean", "lstm_std"} <= set(signatures(rows))
    assert (run / "learning_curve.png").stat().st_size > 0


def test_online_from_scratch_saves_a_store_that_trains(tmp_path):
    """RISE K>0 with no store: the encoder comes from --encoder; --save-store leaves a valid, trainable store."""
    run, out = tmp_path / "run", tmp_path / "played.zarr"
    args = ["--env", PROBE, "--encoder", "downsample", "--env-steps", "96", "--num-envs", "4",
            "--learning-starts", "16", "--replay-ratio", "8", "--replay-capacity", "512", "--save-store", str(out)]  # fmt: skip
    _ok(runner.invoke(app, ["train", "--run-dir", str(run), *args, *SMALL]))
    c = _counters(run)
    assert c["env_steps"] == 96 and c["updates"] == (96 - c["learning_started_at"] + 4) // 8
    s = open_store(out)
    assert s.num_episodes >= c["episodes"]  # every finished episode, plus the running ones cut at the end
    assert check_store(str(out)) == []  # every chunk decodes, every contract holds
    assert s.embedding_meta("downsample")["rows_done"] == s.rows
    # the stored embeddings are what the encoder gives for the stored frames (computed once, by the actor)
    from rise_data.encode.encoders import make_encoder

    ref = make_encoder("downsample")(torch.from_numpy(s.read("frame"))).numpy()
    np.testing.assert_allclose(s.embedding("downsample")[:].astype(np.float32), ref, atol=2e-3)
    _ok(
        runner.invoke(
            app, ["train", "--store", str(out), "--run-dir", str(tmp_path / "pre"), "--updates", "2", *SMALL]
        )
    )


PLUGIN = """
from pathlib import Path
from rise_data.encode.encoders import make_encoder
Path({marker!r}).write_text("imported")

def build(weights=None, source="frame"):
    return make_encoder("downsample", weights=weights, source=source)
"""


def test_plugin_encoder_end_to_end_and_never_imported_unasked(tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    (tmp_path / "tinyenc_mod.py").write_text(textwrap.dedent(PLUGIN.format(marker=str(marker))))
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    args = ["--env", PROBE, "--encoder", "tinyenc_mod:build", "--env-steps", "32", "--num-envs", "4",
            "--learning-starts", "8", "--replay-ratio", "8", "--replay-capacity", "256"]  # fmt: skip
    _ok(runner.invoke(app, ["train", "--run-dir", str(run), *args, *SMALL]))
    assert json.loads(load_checkpoint(run / "checkpoint.pt", "cpu")["encoder"])["name"] == "tinyenc_mod:build"
    marker.unlink()
    sys.modules.pop("tinyenc_mod", None)
    out = runner.invoke(app, ["eval", str(run / "checkpoint.pt"), "--episodes", "1"])
    assert out.exit_code == 2 and "--allow-plugin tinyenc_mod:build" in out.output
    assert not marker.exists()  # the checkpoint did not make rise import the module
    _ok(
        runner.invoke(
            app,
            ["eval", str(run / "checkpoint.pt"), "--episodes", "1", "--allow-plugin", "tinyenc_mod:build"],
        )
    )


ENV_PLUGIN = """
from pathlib import Path
import gymnasium as gym
Path({marker!r}).write_text("imported")
if "MyEnv-v0" not in gym.registry:
    gym.register("MyEnv-v0", entry_point="rise_data.envs.probe:CueMemoryEnv", kwargs={{"delay": 3}})
"""


def test_plugin_env_checkpoint_evaluates_only_with_allow_plugin(tmp_path, monkeypatch):
    """A checkpoint trained on the user's own env: eval refuses it naming --allow-plugin, and runs with it."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "myenv_mod.py").write_text(textwrap.dedent(ENV_PLUGIN.format(marker=str(marker))))
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    args = ["--env", "myenv_mod:MyEnv-v0", "--encoder", "downsample", "--env-steps", "32", "--num-envs", "4",
            "--learning-starts", "8", "--replay-ratio", "8", "--replay-capacity", "256"]  # fmt: skip
    _ok(runner.invoke(app, ["train", "--run-dir", str(run), *args, *SMALL]))
    assert marker.exists()
    marker.unlink()
    sys.modules.pop("myenv_mod", None)  # as in a fresh process that reads the checkpoint
    out = runner.invoke(app, ["eval", str(run / "checkpoint.pt"), "--episodes", "1"])
    assert out.exit_code == 2 and "--allow-plugin myenv_mod:MyEnv-v0 " in out.output, out.output
    assert len(out.output.strip().splitlines()) == 1 and not marker.exists()  # one line; nothing imported
    allow = ["--allow-plugin", "myenv_mod:MyEnv-v0"]
    out = _ok(runner.invoke(app, ["eval", str(run / "checkpoint.pt"), "--episodes", "1", *allow]))
    assert "1 episodes" in out and marker.exists()


def test_quiet_prints_nothing_but_errors(probe_store, tmp_path):
    loud = [a for a in SMALL if a != "--no-progress"][:-4]  # progress on, the evaluation budget scaled
    out = _ok(
        runner.invoke(
            app, ["train", "--store", probe_store, "--run-dir", str(tmp_path / "l"), "--updates", "2", *loud]
        )
    )
    assert (
        "TrainConfig:" in out
        and '"evaluation": {' in out
        and "scaled to the run: about its 128 env steps" in out
    )
    assert "evaluation:" in out  # the end-of-run evaluation's progress bar
    assert '"parameters": ' in out  # the network's trainable parameters (count_parameters)
    run = tmp_path / "run"
    args = ["train", "--store", probe_store, "--run-dir", str(run), "--updates", "2", *SMALL[:-1], "--quiet"]
    assert _ok(runner.invoke(app, args)) == ""  # no config, no bars, no summary line
    assert _ok(runner.invoke(app, ["eval", str(run / "checkpoint.pt"), "--episodes", "1", "--quiet"])) == ""
    out = runner.invoke(app, ["train", "--run-dir", str(run), "--resume", "--updates", "4", "--quiet"])
    assert _ok(out) == "" and _counters(run)["updates"] == 4
    out = runner.invoke(app, ["train", "--run-dir", str(tmp_path / "new"), "--quiet"])
    assert out.exit_code == 2 and out.output.startswith("error: ")  # errors still print


def test_learning_starts_counts_online_transitions_only(probe_store, tmp_path):
    """A store far bigger than --learning-starts does not start learning: only online transitions count."""
    rows = open_store(probe_store).rows
    run = tmp_path / "run"
    args = ["--online", "--env-steps", "64", "--num-envs", "4", "--learning-starts", "32", "--replay-ratio", "4",
            "--replay-capacity", "512"]  # fmt: skip
    assert rows > 32
    _ok(runner.invoke(app, ["train", "--store", probe_store, "--run-dir", str(run), *args, *SMALL]))
    c = _counters(run)
    assert 32 <= c["learning_started_at"] <= 48 and c["updates"] == (64 - c["learning_started_at"] + 4) // 4


def test_eval_budget_scales_with_the_run():
    from rise_agent.training.session import eval_budget

    tiny = TrainConfig(env="ALE/Pong-v5", env_steps=800, num_envs=4)  # the 800-step Pong run
    b = eval_budget(tiny)
    assert (b.episodes, b.max_steps) == (1, 800) and "scaled" in b.why  # ~the run's own 800 env steps
    full = eval_budget(TrainConfig(env="ALE/Pong-v5"))  # 50M env steps: BTR's 8 episodes, no real cap
    assert full.episodes == 8 and full.max_steps == 50_000_000 // 8
    assert eval_budget(TrainConfig(env="x", env_steps=100_000)).episodes == 4
    offline = eval_budget(TrainConfig(store="s", updates=6, replay_ratio=64))  # 6 updates ~ 384 env steps
    assert (offline.episodes, offline.max_steps) == (1, 384)
    given = eval_budget(TrainConfig(env="x", env_steps=800, eval_episodes=3, eval_max_steps=7))
    assert (given.episodes, given.max_steps, given.why) == (3, 7, "as given")
    assert eval_budget(TrainConfig(env="x", env_steps=8, eval_episodes=2)).max_steps == 100  # the floor


def test_bf16_refused_in_one_line_where_the_lstm_cannot_run(probe_store, tmp_path, monkeypatch):
    """As on a CPU whose oneDNN has no bf16 LSTM: the probe fails once, the run is refused before it starts."""
    from rise_agent.training import precision

    calls = []

    def no_bf16_lstm(device_type):
        calls.append(device_type)
        raise RuntimeError(
            "could not create a primitive descriptor for the LSTM forward propagation primitive"
        )

    precision.bf16_lstm_error.cache_clear()
    monkeypatch.setattr(precision, "_probe", no_bf16_lstm)
    try:
        assert precision.bf16_lstm_supported("cpu") is False and precision.bf16_lstm_supported("cpu") is False
        assert calls == ["cpu"]  # probed once, then cached
        args = [
            "train",
            "--store",
            probe_store,
            "--updates",
            "2",
            "--precision",
            "bf16",
            "--device",
            "cpu",
            *SMALL,
        ]
        out = runner.invoke(app, [*args, "--run-dir", str(tmp_path / "r")])
        lines = out.output.strip().splitlines()
        assert out.exit_code == 2 and len(lines) == 1, out.output
        assert "oneDNN cannot run a bf16 LSTM (could not create a primitive descriptor" in lines[0]
        assert "use --precision fp32" in lines[0] and not (tmp_path / "r").exists()
        _ok(runner.invoke(app, [*args, "-k", "0", "--run-dir", str(tmp_path / "k0")]))  # K = 0: no LSTM
    finally:
        precision.bf16_lstm_error.cache_clear()


def test_updates_owed_is_exact_over_a_run():
    for num_envs, ratio in [(64, 64), (8, 3), (4, 8), (5, 2)]:
        owed, total = 0.0, 0
        for t in range(1, 500):
            n, owed = updates_owed(owed, num_envs, ratio)
            total += n
            assert total == (t * num_envs) // ratio


def test_refusals(probe_store, tmp_path):
    run = tmp_path / "r"
    _ok(
        runner.invoke(app, ["train", "--store", probe_store, "--run-dir", str(run), "--updates", "2", *SMALL])
    )
    out = runner.invoke(
        app, ["train", "--store", probe_store, "--run-dir", str(run), "--updates", "2", *SMALL]
    )
    assert out.exit_code == 2 and "--resume" in out.output
    bad = [
        "train",
        "--store",
        probe_store,
        "--run-dir",
        str(tmp_path / "x"),
        "--embedding",
        "nope",
        "--updates",
        "2",
    ]
    out = runner.invoke(app, [*bad, *SMALL])
    assert out.exit_code == 2 and "nope" in out.output
    assert not (tmp_path / "x").exists()  # a start that fails leaves nothing behind
    out = runner.invoke(app, ["eval", str(tmp_path / "missing.pt")])
    assert out.exit_code == 2 and "error:" in out.output
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"replay": {"capasity": 10}}))
    out = runner.invoke(app, ["train", "--run-dir", str(tmp_path / "y"), "--config", str(cfg)])
    assert out.exit_code == 2 and "'replay.capasity'" in out.output and "c.json" in out.output
    out = runner.invoke(app, ["train", "--run-dir", str(run), "--resume", "--lstm-hidden", "8"])
    assert out.exit_code == 2 and "--lstm-hidden cannot change" in out.output


def test_run_directory_lifecycle(probe_store, tmp_path):
    """Failed starts do not block; resume raises targets, honours a copy, and keeps metrics free of repeats."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")  # what a start killed before its first checkpoint leaves
    out = runner.invoke(app, ["train", "--run-dir", str(run), "--resume"])
    assert out.exit_code == 2 and "start it again without --resume" in out.output
    _ok(
        runner.invoke(app, ["train", "--store", probe_store, "--run-dir", str(run), "--updates", "4", *SMALL])
    )
    out = runner.invoke(app, ["train", "--run-dir", str(run), "--resume"])
    assert out.exit_code == 2 and "--updates" in out.output and "already finished" in out.output
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = (run / "train.csv").read_text()
    _ok(runner.invoke(app, ["train", "--run-dir", str(copy), "--resume", "--updates", "8"]))
    assert _counters(copy)["updates"] == 8 and _counters(run)["updates"] == 4
    assert (run / "train.csv").read_text() == before  # the original is untouched
    steps = [int(r.split(",")[0]) for r in (copy / "train.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) == [2, 4, 6, 8]
    assert not list(copy.glob("*.tmp"))


def test_interrupt_then_resume_continues_counters(probe_store, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _ok(
        runner.invoke(app, ["train", "--store", probe_store, "--run-dir", str(run), "--updates", "1", *SMALL])
    )
    config = load_config(json.loads((run / "config.json").read_text()))
    shutil.rmtree(run)
    import dataclasses

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
    assert _counters(run)["updates"] == 5
    monkeypatch.setattr(Learner, "step", real_step)
    out = train(config, resume=True)
    assert out["updates"] == 10
    ck = load_checkpoint(run / "checkpoint.pt", "cpu")
    assert json.loads(ck["counters"])["updates"] == 10
    assert ck["learner"]["updates"] == 10


def test_train_from_packed_store_with_small_screen(tmp_path):
    """A store read straight from its packed zip; the network takes the store's agent view (42x42 here)."""
    from rise_data.share.pack import PackConfig, pack

    src = str(tmp_path / "small.zarr")
    collect(
        CollectConfig(
            PROBE, src, episodes=3, num_envs=1, screen_size=42, env_options={"delay": 4}, progress=False
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
    from rise_data.encode.encoders import make_encoder

    path = str(tmp_path / "wb.zarr")
    collect(CollectConfig(PROBE, path, episodes=2, num_envs=1, env_options={"delay": 4}, progress=False))
    encode(EncodeConfig(store=path, encoder="downsample", progress=False))
    before = open_store(path).rows
    args = ["--online", "--env-steps", "40", "--num-envs", "2", "--learning-starts", "8", "--replay-ratio", "8",
            "--replay-capacity", "256", "--write-back"]  # fmt: skip
    _ok(runner.invoke(app, ["train", "--store", path, "--run-dir", str(tmp_path / "run"), *args, *SMALL]))
    s = open_store(path)
    assert s.rows > before and check_store(path) == []
    assert s.embedding_meta("downsample")["rows_done"] == s.rows
    new = s.embedding("downsample")[before:]
    ref = make_encoder("downsample")(torch.from_numpy(s.read("frame", before))).numpy().astype(np.float16)
    np.testing.assert_allclose(new.astype(np.float32), ref.astype(np.float32), atol=2e-3)
    assert s.meta["history"][-1]["command"] == "rise-agent train --write-back"


def test_online_resume_continues_with_its_replay(probe_store, tmp_path, monkeypatch):
    """Killed mid-run, an online run resumes with its ring (memory-mapped in the run directory): learning
    goes on at once, so the replay ratio holds exactly over the whole run."""
    run = tmp_path / "run"
    args = ["--env", PROBE, "--encoder", "downsample", "--env-steps", "96", "--num-envs", "4", "--learning-starts",
            "16", "--replay-ratio", "4", "--replay-capacity", "512", "--checkpoint-every", "2", "--run-dir", str(run)]  # fmt: skip
    real_step = Learner.step
    calls = {"n": 0}

    def interrupt(self, batch):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_step(self, batch)

    monkeypatch.setattr(Learner, "step", interrupt)
    _ok(runner.invoke(app, ["train", *args, *SMALL]))
    first = _counters(run)
    assert first["updates"] == 6 and first["env_steps"] < 96 and (run / "replay").is_dir()
    monkeypatch.setattr(Learner, "step", real_step)
    _ok(runner.invoke(app, ["train", "--run-dir", str(run), "--resume"]))
    c = _counters(run)
    assert c["env_steps"] == 96 and c["updates"] == (96 - c["learning_started_at"] + 4) // 4
