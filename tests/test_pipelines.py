"""The full Atari recipe's commands (dry run): paper defaults, and a rerun that continues instead of redoing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rise_data.collect import CollectConfig, collect

RECIPE = Path(__file__).parents[1] / "pipelines" / "atari.py"


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
    collect(CollectConfig("ALE/Pong-v5", str(out / "pong.zarr"), steps=40, envs=2, progress=False))
    (out / "pretrain").mkdir(parents=True)
    (out / "pretrain" / "checkpoint.pt").write_bytes(b"")
    from rise_data.store import open_store

    s = open_store(out / "pong.zarr")
    have = s.rows - s.num_episodes
    lines = _dry("--out", str(out), "--collect-steps", "100")
    assert f"--steps {100 - have} " in lines[0]  # tops up what is missing
    assert any("pretrain --resume" in line for line in lines)
