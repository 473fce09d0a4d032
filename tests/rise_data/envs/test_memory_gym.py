"""The memory-gym family: reset parameters as options (autoresets too), frames as memory-gym renders them,
flat actions, a shared pygame display that survives another env, and collect -> encode -> online train ->
eval through the CLIs at tiny sizes.

Needs memory-gym (``make memory-gym``; docs/envs.md); skipped with that install line otherwise.
"""

from __future__ import annotations

import importlib.util
import sys

import gymnasium as gym
import numpy as np
import pytest
from conftest import cli_ok, encode_train_eval

from rise_data.cli import app as data_app
from rise_data.envs import EnvError, build_spec, make_env
from rise_data.store import open_store

needs = pytest.mark.skipif(
    importlib.util.find_spec("memory_gym") is None,
    reason="memory-gym is not installed: make memory-gym (.venv/bin/python -m pip install --no-deps -r requirements/memory-gym.txt)",
)


def _raw(env_id: str, **kwargs) -> gym.Env:
    build_spec(env_id)  # imports memory_gym (registers its ids) the way the family does
    return gym.make(env_id, **kwargs)


@needs
def test_spec_records_reset_parameters_and_autoresets_pass_them():
    """MysteryPath ends an episode only at its goal or max_steps: with max_steps=20 every episode of
    random play is 20 steps, the ones after an autoreset too (gymnasium's autoreset passes no options)."""
    spec = build_spec("MysteryPath-v0", max_steps=20)
    assert spec.family == "memory_gym" and spec.wrappers == ("transpose", "flat_actions")
    assert spec.kwargs["max_steps"] == 20 and spec.kwargs["reward_goal"] == 1.0  # defaults recorded too
    assert spec.n_actions == 9 and spec.frame_shape == (84, 84, 3)
    env = make_env(spec.to_json(), num_envs=2)
    steps = [env.reset(seed=0)]
    rng = np.random.default_rng(0)
    steps += [env.step(rng.integers(0, 9, 2)) for _ in range(70)]
    env.close()
    first = np.array([s.is_first for s in steps])
    term = np.array([s.terminated for s in steps])
    assert np.flatnonzero(first[:, 0]).tolist() == [0, 21, 42, 63] and first.all(axis=1).sum() == 4
    assert np.flatnonzero(term[:, 1]).tolist() == [20, 41, 62]


@needs
def test_frames_are_memory_gyms_render_and_actions_flatten_row_major():
    """The family's frame is what memory-gym's own render() shows; action a is (a // 3, a % 3)."""
    actions = np.random.default_rng(1).integers(0, 9, size=25)
    env = make_env(build_spec("MortarMayhem-v0"), num_envs=1)
    mine = [env.reset(seed=5).frame[0]] + [env.step(np.array([a])).frame[0] for a in actions]
    env.close()
    raw = _raw("MortarMayhem-v0", render_mode="rgb_array")
    raw.reset(seed=5)
    ref = [raw.render()]
    for a in actions:
        raw.step(np.array([a // 3, a % 3]))
        ref.append(raw.render())
    raw.close()
    assert all(np.array_equal(m, r) for m, r in zip(mine, ref, strict=True))
    assert len({m.tobytes() for m in mine}) > 5  # the agent moved: a test of frames, not of one still image


@needs
def test_another_env_built_and_closed_mid_episode_leaves_frames_unchanged():
    """All memory-gym envs of a process draw on pygame's one display; an evaluation env made and closed
    during training must not change the training env's frames (memory-gym's close is pygame.quit())."""
    spec = build_spec("SearingSpotlights-v0")
    actions = np.random.default_rng(2).integers(0, 9, size=(30, 1))

    def run(interrupt: bool) -> list[np.ndarray]:
        env = make_env(spec, num_envs=1)
        out = [env.reset(seed=4).frame]
        for t, a in enumerate(actions):
            if interrupt and t == 10:
                other = make_env(spec, num_envs=1)
                other.reset(seed=9)
                other.step(np.array([1]))
                other.close()
            out.append(env.step(a).frame)
        env.close()
        return out

    assert all(np.array_equal(a, b) for a, b in zip(run(False), run(True), strict=True))


@needs
@pytest.mark.parametrize(
    "env_id,options,message",
    [
        ("MortarMayhem-v0", {"commands": 3}, "unknown MortarMayhem-v0 option(s) ['commands']"),
        ("MortarMayhem-v0", {"arena_size": 9}, "MortarMayhem-v0 rejects its options {'arena_size': 9}"),
        ("MortarMayhemB-v0", {}, "use MortarMayhem-v0 or MortarMayhem-Grid-v0"),
    ],
)
def test_bad_options_refused_in_one_line(env_id, options, message):
    with pytest.raises(EnvError) as e:
        build_spec(env_id, **options)
    assert message in str(e.value) and "\n" not in str(e.value)


@needs
def test_grid_variant_keeps_its_discrete_actions():
    spec = build_spec("MortarMayhem-Grid-v0")
    assert spec.wrappers == ("transpose",) and spec.n_actions == 4


@needs
@pytest.mark.slow
def test_memory_gym_collect_encode_train_eval(tmp_path):
    store, run = str(tmp_path / "s.zarr"), str(tmp_path / "run")
    opts = ["--env-option", "command_count=[3]"]
    cli_ok(
        data_app, ["collect", "MortarMayhem-v0", store, "--steps", "60", "--num-envs", "2", "--quiet", *opts]
    )
    s = open_store(store)
    assert s.env["family"] == "memory_gym" and tuple(s.env["frame_shape"]) == (84, 84, 3)
    assert s.env["kwargs"]["command_count"] == [3] and s.env["wrappers"] == ["transpose", "flat_actions"]
    assert s.read("frame", 0, 1).shape == (1, 84, 84, 3) and s.read("obs", 0, 1).shape == (1, 84, 84)
    # evaluation rebuilds the env from the spec the store recorded (id, family, reset parameters, wrappers)
    out = encode_train_eval(store, run)
    assert "MortarMayhem-v0" in out and "2 episodes" in out


def test_missing_memory_gym_names_the_install_route(monkeypatch):
    monkeypatch.setitem(sys.modules, "memory_gym", None)  # what the import meets where it is not installed
    with pytest.raises(EnvError) as e:
        build_spec("MortarMayhem-v0")
    assert "install it: make memory-gym (" in str(e.value) and "requirements/memory-gym.txt" in str(e.value)
