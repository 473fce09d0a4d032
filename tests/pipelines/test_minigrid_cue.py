"""pipelines/minigrid_cue.py: the cue-in-view test on a real MemoryEnv, the summary against a hand count, and
(slow) a toy checkpoint played through the real env."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def mc():
    sys.path.insert(0, str(ROOT / "pipelines"))
    try:
        return importlib.import_module("minigrid_cue")
    finally:
        sys.path.remove(str(ROOT / "pipelines"))


def memory_env():
    gym = pytest.importorskip("gymnasium")
    pytest.importorskip("minigrid")
    env = gym.make("MiniGrid-MemoryS7-v0")
    env.reset(seed=0)
    return env.unwrapped


@pytest.mark.parametrize(
    ("pos", "direction", "sees"),
    [((1, 3), 0, True), ((3, 3), 0, False), ((3, 3), 2, True), ((4, 3), 0, False), ((2, 3), 1, False)],
)
def test_cue_seen_only_when_in_the_view(mc, pos, direction, sees):
    """From x = 1 the start-facing view holds the cue; from further right it is behind the agent until it
    turns left (direction 2); facing down (1) the room's wall hides it."""
    env = memory_env()
    env.agent_pos, env.agent_dir = np.array(pos), direction
    assert mc.cue_cell(env) == (1, 2)
    assert mc.cue_seen(env) is sees


def test_summary_against_a_hand_count(mc):
    def ep(start_x, seen, last_seen, success, length, truncated=False):
        return dict(
            start_x=start_x,
            seen=seen,
            last_seen=last_seen,
            success=success,
            length=length,
            truncated=truncated,
        )

    rows = [
        ep(1, True, 0, True, 6),  # seen 6 steps before the end: in reach of K = 4? no; of K = 8: yes
        ep(1, True, 3, False, 6),  # seen 3 steps before the end
        ep(3, False, -1, True, 5),
        ep(2, True, 1, False, 245, truncated=True),  # on the time limit: not in the in-reach share
    ]
    s = mc.summarise(rows, k=4)
    assert s["episodes"] == 4 and s["success"] == 0.5
    assert s["cue_seen_share"] == 0.75 and s["success_when_seen"] == round(1 / 3, 3)
    assert s["success_when_unseen"] == 1.0
    assert s["cue_in_reach_share"] == round(1 / 3, 3)  # of the 3 ended episodes only the second
    assert s["start_x1_share"] == 0.5 and s["success_start_x1"] == 0.5
    assert s["time_limit_share"] == 0.25 and s["mean_length"] == 65.5
    assert mc.summarise(rows, k=8)["cue_in_reach_share"] == round(2 / 3, 3)
    assert mc.summarise([], k=4)["success"] is None


@pytest.mark.slow
def test_a_toy_checkpoint_played_on_the_real_env(mc, tmp_path):
    memory_env()
    run = tmp_path / "run"
    train = [
        sys.executable,
        "-m",
        "rise_agent.cli",
        "train",
        "--env",
        "MiniGrid-MemoryS7-v0",
        "--screen-size",
        "21",
    ]
    train += ["--encoder", "downsample"]
    train += [
        "-k",
        "2",
        "--env-steps",
        "64",
        "--num-envs",
        "2",
        "--learning-starts",
        "32",
        "--batch-size",
        "4",
    ]
    train += ["--impala-channels", "4,4,4", "--hidden", "8", "--lstm-hidden", "8", "--n-cos", "8"]
    train += ["--device", "cpu", "--no-progress", "--run-dir", str(run)]
    subprocess.run(train, check=True, cwd=ROOT, capture_output=True)
    rows = mc.play(str(run / "checkpoint.pt"), episodes=6, seed=3, epsilon=1.0)
    assert len(rows) == 6
    for r in rows:
        assert 1 <= r["start_x"] <= 4 and r["length"] >= 1
        if r["start_x"] == 1:  # the cue is in the first view
            assert r["seen"] and r["last_seen"] >= 0
        assert not (r["success"] and r["truncated"])  # a success ends the episode before its limit
