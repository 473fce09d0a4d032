"""The pipelines: the full Atari recipe's commands (dry run) and the `make demo` quickstart at tiny sizes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from rise_data.collect import CollectConfig, collect

RECIPE = Path(__file__).parents[2] / "pipelines" / "atari.py"


def _dry(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(RECIPE), "--dry-run", *args], capture_output=True, text=True, check=True
    )
    return [line for line in out.stdout.splitlines() if line.startswith("$ ")]


def test_recipe_defaults(tmp_path):
    lines = _dry("--out", str(tmp_path / "pong"))
    assert len(lines) == 6
    assert "collect ALE/Pong-v5" in lines[0] and "--steps 1000000" in lines[0]
    assert "encode" in lines[1] and "--encoder resnet18" in lines[1]
    assert "--context-len 80" in lines[3] and "--updates 100000" in lines[3]
    assert "--online" in lines[4] and "--num-envs 64" in lines[4] and "--env-steps 50000000" in lines[4]
    assert "eval" in lines[5] and "--episodes 100" in lines[5]


def test_recipe_rerun_tops_up_and_resumes(tmp_path):
    out = tmp_path / "pong"
    collect(CollectConfig("ALE/Pong-v5", str(out / "pong.zarr"), steps=40, num_envs=2, progress=False))
    (out / "pretrain").mkdir(parents=True)
    (out / "pretrain" / "checkpoint.pt").write_bytes(b"")
    from rise_data.store import open_store

    s = open_store(out / "pong.zarr")
    have = s.rows - s.num_episodes
    lines = _dry("--out", str(out), "--collect-steps", "100")
    assert f"--steps {100 - have} " in lines[0]  # tops up what is missing
    assert any("pretrain --resume" in line for line in lines)


def test_demo_tiny(tmp_path):
    """`make demo` end to end at tiny sizes: both agents train and evaluate, one PNG, a verdict, no warnings."""
    demo = Path(__file__).parents[2] / "pipelines" / "quickstart.py"
    out = tmp_path / "qs"
    sizes = ["--delay", "2", "-k", "4", "--episodes", "8", "--updates", "4", "--batch-size", "8"]
    evals = ["--eval-every", "2", "--eval-episodes", "2"]
    run = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(demo), "--out", str(out), *sizes, *evals],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "RISE K=4: " in run.stdout and "vs K=0: " in run.stdout and "(chance 50%)" in run.stdout
    assert (out / "memory" / "memory_curves.png").stat().st_size > 0
    assert "Warning" not in run.stderr, run.stderr[-2000:]
    for k in (4, 0):
        assert (
            len(list(csv.DictReader((out / "memory" / f"k{k}" / "eval.csv").read_text().splitlines()))) >= 2
        )  # a curve


def test_demo_refuses_a_window_without_the_cue(tmp_path):
    demo = Path(__file__).parents[2] / "pipelines" / "quickstart.py"
    run = subprocess.run(
        [sys.executable, str(demo), "--out", str(tmp_path / "qs"), "--delay", "10", "-k", "8"],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert "--context-len 8 must exceed --delay 10" in run.stderr
    assert not (tmp_path / "qs").exists()
