"""pipelines/learning.py end to end at toy size: the real train/eval CLI, the csv and md it writes, resuming.

Checks the bookkeeping (columns, one row per run, the default losses in every command), not the success
level: that is what the full-size runs in docs/results.md measure.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
TOY = [
    "env_steps=96",
    "num_envs=2",
    "learning_starts=32",
    "batch_size=4",
    "replay_ratio=8",
    "k=2",
    "eval_every=4",
    "eval_points_episodes=2",
    "eval_episodes=4",
    "impala_channels=4,4,4",
    "hidden=8",
    "lstm_hidden=8",
    "n_cos=8",
    "screen=12",
]


def _run(tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "pipelines" / "learning.py"), "--tasks", "cue", "--seeds", "0"]
    cmd += ["--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"), "--set", *TOY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_learning_pipeline_end_to_end(tmp_path):
    out = _run(tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    with (tmp_path / "docs" / "results.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    required = ["task", "memory", "K", "seed", "success", "mean_return", "env_steps", "wall_s"]
    assert [c for c in reader.fieldnames if c in required] == required
    assert sorted((r["task"], r["K"], r["seed"], r["memory"]) for r in rows) == [
        ("cue", "0", "0", "yes"),
        ("cue", "2", "0", "yes"),
    ]
    for r in rows:
        assert 0.0 <= float(r["success"]) <= 1.0 and float(r["wall_s"]) > 0 and r["env_steps"] == "96"
    md = (tmp_path / "docs" / "results.md").read_text()
    commands = [line.strip().strip("`") for line in md.splitlines() if line.strip().startswith("`rise-agent")]
    assert len(commands) == 4 and sum(c.startswith("rise-agent train") for c in commands) == 2
    for c in commands:  # sizes only: the losses and targets stay BTR's defaults
        assert not any(
            f in c.split() for f in ("--n-step", "--gamma", "--per-alpha", "--lr", "--no-munchausen")
        )
    config = json.loads((tmp_path / "runs" / "cue" / "k2-seed0" / "config.json").read_text())
    assert (config["replay"]["n_step"], config["replay"]["gamma"], config["replay"]["per_alpha"]) == (
        3,
        0.997,
        0.2,
    )
    assert (tmp_path / "docs" / "results-cue.png").stat().st_size > 0
    # resumable: a rerun finds both runs finished and trains nothing; text after the marker is kept
    done = tmp_path / "runs" / "cue" / "k2-seed0" / "result.json"
    before = done.stat().st_mtime_ns
    (tmp_path / "docs" / "results.md").write_text(md + "\nwritten by hand\n")
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert done.stat().st_mtime_ns == before and "success" not in again.stdout
    md2 = (tmp_path / "docs" / "results.md").read_text()
    assert md2.count("written by hand") == 1 and md2.count("## Per seed") == 1


def test_time_limit_share_and_frozen_flag_and_earlier_rows_kept(tmp_path):
    """A T-maze run records the share of its evaluation episodes that hit the time limit and the frozen flag;
    the earlier csv's rows of other tasks stay in the csv and in the md, with their commands."""
    docs = tmp_path / "docs"
    docs.mkdir()
    earlier = {c: "" for c in ("time_limit_share", "frozen", "load_start", "load_end")}
    earlier |= {"task": "cue", "env": "rise/CueMemory-v0", "memory": "yes", "K": "16", "seed": "5"}
    earlier |= {"success": "1.0", "mean_return": "1.0", "env_steps": "9000", "updates": "3956"}
    earlier |= {"eval_episodes": "100", "wall_s": "1.0", "eval_wall_s": "1.0"}
    earlier |= {"train_command": "rise-agent train --earlier", "eval_command": "rise-agent eval --earlier"}
    with (docs / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(earlier))
        w.writeheader()
        w.writerow(earlier)
    # env option max_steps=9 with 8 corridor cells: an untrained greedy policy rarely answers in time
    cmd = [sys.executable, str(ROOT / "pipelines" / "learning.py"), "--tasks", "tmaze", "--seeds", "0"]
    cmd += ["--ks", "2", "--out", str(tmp_path / "runs"), "--docs", str(docs), "--set", *TOY]
    cmd += ["env_options=max_steps=9", "--extra=--eps-end 0.5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    with (docs / "results.csv").open() as f:
        rows = {r["task"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"cue", "tmaze"} and rows["cue"]["train_command"] == "rise-agent train --earlier"
    run = rows["tmaze"]
    share = float(run["time_limit_share"])
    assert 0.0 <= share <= 1.0 and run["frozen"] == ("yes" if share > 0.5 else "no")
    assert run["train_command"].endswith("--eps-end 0.5 --run-dir " + str(tmp_path / "runs/tmaze/k2-seed0"))
    result = json.loads((tmp_path / "runs" / "tmaze" / "k2-seed0" / "result.json").read_text())
    assert result["time_limit_share"] == share
    md = (docs / "results.md").read_text()
    assert "`rise-agent train --earlier`" in md and "| time-limit share | frozen |" in md


def test_mean_curve_averages_seeds_whose_evaluation_points_differ():
    import importlib.util

    spec = importlib.util.spec_from_file_location("learning", ROOT / "pipelines" / "learning.py")
    learning = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = learning
    spec.loader.exec_module(learning)
    a = {100: 0.0, 200: 1.0, 300: 1.0}
    b = {110: 0.5, 190: 0.0, 310: 1.0}
    xs, means = learning.mean_curve([a, b])
    # naive: at each of a's points from the latest start on, b's latest value at or before it
    assert xs == [200, 300] and means == [(1.0 + 0.0) / 2, (1.0 + 0.0) / 2]
    assert learning.mean_curve([a]) == ([100, 200, 300], [0.0, 1.0, 1.0])
