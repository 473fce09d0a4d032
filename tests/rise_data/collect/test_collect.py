"""Collection from real envs: layout, append rules, interruption and kill safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rise_data.collect import CollectConfig, collect
from rise_data.envs import EnvError, atari_game, env_spec, to_agent_obs
from rise_data.store import StoreError, open_store
from rise_data.store.check import check_store


def test_pong_store_layout(pong_store):
    s = open_store(pong_store)
    ep = s.episodes()
    steps = int(ep["length"].sum())
    assert steps >= 400 and s.rows == steps + s.num_episodes
    assert s.env["kwargs"]["repeat_action_probability"] == 0.25 and s.env["kwargs"]["frameskip"] == 4
    assert s.env["kwargs"]["noop_max"] == 30 and s.env["kwargs"]["max_num_frames_per_episode"] == 108_000
    assert s.read("obs").shape == (s.rows, 84, 84) and s.read("frame").shape == (s.rows, 210, 160, 3)
    # the agent observation is the stored frame, grayed and area-resized
    frames, obs = s.read("frame", 0, 50), s.read("obs", 0, 50)
    assert np.array_equal(obs, to_agent_obs(frames, 84))
    # collection stopped at --steps: every episode was cut as truncated (random Pong lasts > 100 steps)
    assert s.read("truncated")[ep["start"] + ep["length"]].all()
    hist = s.meta["history"][-1]
    assert (
        hist["command"] == "collect" and hist["config"]["steps"] == 400 and hist["policy"]["name"] == "random"
    )
    assert check_store(pong_store) == []


def test_batched_agent_obs_equals_per_frame_loop():
    """Frames batched as one tall image or stack mix no pixels across frames (cv2 itself: test_agent_obs)."""
    rng = np.random.default_rng(0)
    for shape in [(210, 160, 3), (64, 64, 3)]:  # the exact path and the cv2 fallback
        frames = rng.integers(0, 256, (5, *shape), dtype=np.uint8)
        naive = np.stack([to_agent_obs(f[None], 84)[0] for f in frames])
        assert np.array_equal(to_agent_obs(frames, 84), naive)


def test_append_same_env_and_refuse_other(pong_copy):
    before = open_store(pong_copy).rows
    out = collect(CollectConfig("ALE/Pong-v5", pong_copy, steps=50, num_envs=2, seed=7, progress=False))
    s = open_store(pong_copy)
    assert s.rows == before + out["rows"] and out["steps"] >= 50
    assert check_store(pong_copy) == []
    with pytest.raises(StoreError, match="refusing to append"):
        collect(CollectConfig("ALE/Breakout-v5", pong_copy, steps=10, num_envs=1, progress=False))
    with pytest.raises(StoreError, match="repeat_action_probability"):
        collect(
            CollectConfig(
                "ALE/Pong-v5",
                pong_copy,
                steps=10,
                num_envs=1,
                progress=False,
                env_options={"repeat_action_probability": 0.0},
            )
        )
    assert open_store(pong_copy).rows == s.rows  # refusals wrote nothing


def test_whole_episodes_from_probe_env(tmp_path):
    path = str(tmp_path / "probe.zarr")
    collect(CollectConfig("rise/CueMemory-v0", path, episodes=5, num_envs=3, progress=False))
    s = open_store(path)
    ep = s.episodes()
    assert s.num_episodes == 5 and (ep["length"] == 32).all()
    assert s.read("terminated")[ep["start"] + ep["length"]].all()
    assert set(np.unique(ep["return"])) <= {-1.0, 1.0}
    assert check_store(path) == []


def test_env_errors():
    assert atari_game("ALE/MsPacman-v5") == "ms_pacman" and atari_game("CartPole-v1") is None
    with pytest.raises(EnvError, match="unknown env id"):
        env_spec("NoSuchEnv-v0")
    with pytest.raises(EnvError, match="image observations"):
        env_spec("CartPole-v1")
    with pytest.raises(EnvError, match="unknown Atari option"):
        env_spec("ALE/Pong-v5", sticky=0.1)


def _start_collect(path: str, steps: int) -> subprocess.Popen:
    code = (
        "from rise_data.collect import CollectConfig, collect;"
        f"collect(CollectConfig('ALE/Pong-v5', {path!r}, steps={steps}, num_envs=4, progress=False))"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_rows(path: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if open_store(path).rows > 0:
                return
        except StoreError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.2)
    raise AssertionError("no rows committed in time")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_leaves_valid_store_that_appends(tmp_path, sig):
    path = str(tmp_path / "k.zarr")
    proc = _start_collect(path, steps=200_000)
    _wait_for_rows(path, proc)
    time.sleep(0.5)
    os.kill(proc.pid, sig)
    proc.communicate(timeout=60)  # closes the pipes too
    assert not [p for p in check_store(path) if p.severity == "error"]
    rows = open_store(path).rows
    if sig == signal.SIGTERM:  # graceful: the running episodes were cut and committed
        assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
        assert open_store(path).meta["history"][-1]["interrupted"] is True
    collect(CollectConfig("ALE/Pong-v5", path, steps=20, num_envs=2, seed=3, progress=False))
    assert open_store(path).rows > rows and check_store(path) == []


class _StallingPolicy:
    """Random actions until ``RISE_TEST_STALL_AFTER`` episodes finished, then it writes that count to
    ``RISE_TEST_STALL_FILE`` and blocks: every step before this one was filed, so those episodes are done."""

    def __init__(self, n_actions: int):
        self.n_actions, self.finished = n_actions, 0
        self.after, self.file = int(os.environ["RISE_TEST_STALL_AFTER"]), os.environ["RISE_TEST_STALL_FILE"]
        self.rng = np.random.default_rng(0)

    def act(self, step):
        if self.finished >= self.after:  # counted from earlier steps only: this one is not filed yet
            with open(self.file, "w") as f:
                f.write(str(self.finished))
            time.sleep(3600)
        self.finished += int((step.terminated | step.truncated).sum())
        return self.rng.integers(self.n_actions, size=len(step.obs))

    def describe(self) -> dict:
        return {"name": "stalling test policy"}


def make_stalling(env, num_envs, seed, checkpoint):
    return _StallingPolicy(int(env["n_actions"]))


def test_finished_episodes_are_committed_without_waiting_for_more(tmp_path):
    """Stepping stalls after a few short episodes: all of them get committed anyway, so a kill -9 then
    loses nothing that finished (the old 2,048-row buffer held them back)."""
    path, flag = str(tmp_path / "d.zarr"), tmp_path / "stalled"
    env = {
        **os.environ,
        "PYTHONPATH": os.path.dirname(__file__),
        "RISE_TEST_STALL_AFTER": "5",
        "RISE_TEST_STALL_FILE": str(flag),
    }
    rise_data = os.path.join(os.path.dirname(sys.executable), "rise-data")
    args = ["collect", "rise/CueMemory-v0", path, "--steps", "100000", "--num-envs", "2", "--quiet"]
    proc = subprocess.Popen(
        [rise_data, *args, "--policy", "test_collect:make_stalling"], env=env, stderr=subprocess.PIPE
    )
    try:
        t0 = time.time()
        while not flag.exists():
            assert proc.poll() is None and time.time() - t0 < 120, proc.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        finished = int(flag.read_text())
        while open_store(path).num_episodes < finished and time.time() - t0 < 120:
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.communicate()
    s = open_store(path)
    assert finished >= 5 and s.num_episodes == finished and s.rows == finished * 33  # 32-step probe episodes
    assert check_store(path) == []


def test_commit_rows_trades_commits_for_durability(tmp_path):
    each, batched = str(tmp_path / "each.zarr"), str(tmp_path / "batched.zarr")
    collect(CollectConfig("rise/CueMemory-v0", each, episodes=10, num_envs=2, progress=False))
    collect(
        CollectConfig(
            "rise/CueMemory-v0", batched, episodes=10, num_envs=2, commit_rows=10_000, progress=False
        )
    )
    h_each, h_batched = (open_store(p).meta["history"][-1] for p in (each, batched))
    assert h_batched["commits"] == 1 and h_each["commits"] >= 2  # 5 pairs of episodes end 32 steps apart
    assert open_store(each).num_episodes == open_store(batched).num_episodes == 10
    with pytest.raises(ValueError, match="--commit-rows"):
        collect(
            CollectConfig("rise/CueMemory-v0", str(tmp_path / "x"), steps=5, commit_rows=-1, progress=False)
        )


def test_collect_and_encode_options_come_from_their_configs(tmp_path):
    """Every option has help and the dataclass default; --num-envs is the name, --envs a hidden alias."""
    from typer.testing import CliRunner

    from rise_data.cli import app, collect, encode

    assert all(o.help for o in collect.options + encode.options), [
        o.flag for o in collect.options if not o.help
    ]
    runner = CliRunner()
    for command in ("collect", "encode"):
        text = runner.invoke(app, [command, "--help"], terminal_width=200).output
        assert "--envs " not in text and ("--num-envs" in text) == (command == "collect")
    assert "[default: 8]" in runner.invoke(app, ["collect", "--help"], terminal_width=200).output
    path = str(tmp_path / "a.zarr")
    out = runner.invoke(app, ["collect", "rise/CueMemory-v0", path, "--episodes", "1", "--envs", "2", "-q"])
    assert out.exit_code == 0 and "--envs is deprecated: use --num-envs" in out.output, out.output
    assert open_store(path).meta["history"][-1]["config"]["num_envs"] == 2
