"""The env-family seam: EnvSpec round trips, families, plug-ins and their trust rule, wrappers, Dict
observations, async vectorization, and collect through the CLI with wrappers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import requires
from typer.testing import CliRunner

from rise_data.cli import app
from rise_data.envs import (
    EnvError,
    EnvSpec,
    GymnasiumFamily,
    build_spec,
    env_difference,
    env_spec,
    get_family,
    make_env,
    register_family,
    register_scores,
    same_env,
)
from rise_data.store import open_store

CUE = "rise/CueMemory-v0"

PLUGIN = textwrap.dedent(
    """
    import pathlib
    import gymnasium as gym
    import numpy as np
    from rise_data.envs.probe import CueMemoryEnv

    pathlib.Path(__file__).with_suffix(".imported").write_text("yes")  # proves whether rise imported us
    if "PluginCue-v0" not in gym.registry:
        gym.register("PluginCue-v0", entry_point=CueMemoryEnv)


    class _DictObs(gym.ObservationWrapper):
        def __init__(self, env, second_image, key):
            super().__init__(env)
            self.key = key
            spaces = {key: env.observation_space, "pos": gym.spaces.Box(-1, 1, (2,), np.float32)}
            if second_image:
                spaces["other"] = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
            self.observation_space = gym.spaces.Dict(spaces)
            self.second_image = second_image

        def observation(self, obs):
            out = {self.key: obs, "pos": np.zeros(2, np.float32)}
            if self.second_image:
                out["other"] = np.zeros((8, 8, 3), np.uint8)
            return out


    def make(delay=3, dict_obs=False, second_image=False, key="pixels"):
        env = CueMemoryEnv(delay=delay)
        return _DictObs(env, second_image, key) if dict_obs else env
    """
)


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """A user's env module on sys.path (a fresh name per test, so imports are observable)."""
    name = f"user_envs_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, tmp_path / f"{name}.imported"


def test_spec_round_trip_and_pre_seam_stores():
    spec = build_spec(CUE, delay=3)
    assert spec.family == "gymnasium" and spec.obs_shape == (84, 84) and spec.frame_shape == (64, 64, 3)
    assert EnvSpec.from_json(spec.to_json()) == spec
    assert json.loads(json.dumps(spec.to_json())) == spec.to_json()  # pure JSON
    atari = build_spec("ALE/Pong-v5")
    assert atari.family == "atari" and atari.extra == {"game": "pong"}
    assert EnvSpec.from_json(atari.to_json()) == atari and atari.to_json()["game"] == "pong"
    # what rise wrote before the family seam: 'kind', no family/wrappers/factory
    old = {k: v for k, v in spec.to_json().items() if k not in ("family", "wrappers", "factory")}
    assert same_env(old, spec.to_json()) and EnvSpec.from_json(old) == spec
    with pytest.raises(EnvError, match="names no family"):
        EnvSpec.from_json({"id": CUE})
    other = build_spec(CUE, delay=4)
    assert not same_env(spec, other) and env_difference(spec, other) == "delay=3 vs 4"
    with pytest.raises(dataclass_frozen_error()):
        spec.id = "x"  # type: ignore[misc]


def dataclass_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_module_env_id_and_factory(plugin):
    name, marker = plugin
    spec = build_spec(f"{name}:PluginCue-v0", delay=2)
    assert spec.factory is None and spec.family == "gymnasium" and marker.exists()
    fac = build_spec(f"{name}:make", delay=2)
    assert fac.factory == f"{name}:make" and fac.n_actions == 3
    env = make_env(fac.to_json(), num_envs=2)
    step = env.reset(seed=0)
    for _ in range(4):  # delay 2: frames t=0..3 (query at t=3), the 4th step answers and ends it
        step = env.step(np.zeros(2, np.int64))
    assert step.terminated.all() and step.frame.shape == (2, 64, 64, 3)
    env.close()
    with pytest.raises(EnvError, match="no env family claims|unknown env id"):
        build_spec(f"{name}:NoSuchThing-v0")


def test_store_metadata_never_imports_a_factory(plugin, tmp_path):
    """A spec from someone else's store names a factory: rise refuses to import it unless the user passes it."""
    name, marker = plugin
    spec = EnvSpec(id=f"{name}:make", family="gymnasium", factory=f"{name}:make", kwargs={"delay": 2})
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); from rise_data.envs import make_env, allow_plugin\n"
        "spec = json.loads(sys.argv[2])\n"
        "try:\n    make_env(spec)\nexcept ValueError as e:\n    print('REFUSED', e)\n"
        "allow_plugin(spec['factory']); print('BUILT', make_env(spec).n_actions)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), json.dumps(spec.to_json())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = out.stdout.splitlines()
    assert lines[0].startswith("REFUSED") and f"--allow-plugin {name}:make" in lines[0], out.stderr
    assert lines[1] == "BUILT 3"


@requires("pygame")  # gymnasium renders classic-control envs with pygame
def test_wrappers_render_resize_skip(tmp_path):
    spec = build_spec("CartPole-v1", wrappers=["render", "resize=32x48", "frame_skip=2"])
    assert spec.wrappers == ("render", "resize=32x48", "frame_skip=2") and spec.frame_shape == (32, 48, 3)
    env = make_env(spec, num_envs=2)
    env.reset(seed=0)
    step = env.step(np.zeros(2, np.int64))
    assert step.frame.shape == (2, 32, 48, 3) and step.obs.shape == (2, 84, 84)
    assert np.all(step.reward == 2.0)  # CartPole's +1 per step, summed over the 2 skipped steps
    env.close()
    with pytest.raises(EnvError, match="unknown --wrapper 'blur'.*resize"):
        build_spec("CartPole-v1", wrappers=["render", "blur"])
    with pytest.raises(EnvError, match="--wrapper render"):
        build_spec("CartPole-v1")  # vector observations: the error names the fix
    with pytest.raises(EnvError, match="Discrete"):
        build_spec("Pendulum-v1", wrappers=["render"])


def test_dict_observations_pick_the_image_key(plugin):
    name, _ = plugin
    spec = build_spec(f"{name}:make", dict_obs=True)
    assert spec.wrappers == ("image_key=pixels",) and spec.frame_shape == (64, 64, 3)
    # two images: a conventional name wins, else the user must say which
    assert build_spec(f"{name}:make", dict_obs=True, second_image=True).wrappers == ("image_key=pixels",)
    with pytest.raises(EnvError, match=r"image keys \['cam', 'other'\].*--wrapper image_key=KEY"):
        build_spec(f"{name}:make", dict_obs=True, second_image=True, key="cam")
    two = build_spec(f"{name}:make", wrappers=["image_key=other"], dict_obs=True, second_image=True)
    assert two.frame_shape == (8, 8, 3)
    with pytest.raises(EnvError, match=r"observation keys are \['pixels', 'pos'\]"):
        build_spec(f"{name}:make", wrappers=["image_key=nope"], dict_obs=True)


def test_async_equals_sync():
    spec = build_spec(CUE, delay=3)
    envs = [make_env(spec, num_envs=3, vectorization=v) for v in ("sync", "async")]
    steps = [e.reset(seed=5) for e in envs]
    rng = np.random.default_rng(0)
    for _ in range(12):
        assert all(np.array_equal(getattr(steps[0], k), getattr(steps[1], k)) for k in vars(steps[0]))
        a = rng.integers(0, 3, 3)
        steps = [e.step(a) for e in envs]
    assert type(envs[1].env.env).__name__ == "AsyncVectorEnv"
    for e in envs:
        e.close()


def test_user_family_and_scores():
    class Probe(GymnasiumFamily):
        name = "probe-test"
        prefixes = ("rise/Cue",)

    register_family(Probe())
    try:
        spec = build_spec(CUE, delay=2)
        assert spec.family == "probe-test" and get_family("probe-test").claims(CUE)
        assert spec.normalize(1.0) == {}
        register_scores("probe-test", lambda s, r: {"success_rate": (r + 1) / 2})
        assert EnvSpec.from_json(spec.to_json()).normalize(0.5) == {"success_rate": 0.75}
    finally:
        from rise_data.envs import registry

        registry._FAMILIES.pop("probe-test")
        registry._SCORES.pop("probe-test", None)
    assert build_spec(CUE, delay=2).family == "gymnasium"
    with pytest.raises(EnvError, match="unknown env family 'nope'"):
        make_env({"id": CUE, "family": "nope"})


@requires("pygame")  # gymnasium renders classic-control envs with pygame
def test_collect_cli_with_wrappers(tmp_path):
    path = str(tmp_path / "cart.zarr")
    args = ["collect", "CartPole-v1", path, "--episodes", "2", "--num-envs", "2", "--quiet"]
    res = CliRunner().invoke(app, [*args, "--wrapper", "render", "--wrapper", "resize=40x60"])
    assert res.exit_code == 0, res.output
    s = open_store(path)
    assert s.env["wrappers"] == ["render", "resize=40x60"] and s.read("frame", 0, 1).shape == (1, 40, 60, 3)
    # the store records exactly what rebuilds the env
    assert make_env(s.env).frame_shape == (40, 60, 3)
    res = CliRunner().invoke(app, [*args, "--wrapper", "render", "--wrapper", "resize=40x64"])
    assert res.exit_code != 0 and "wrappers differs" in res.output
    res = CliRunner().invoke(app, ["collect", "CartPole-v1", str(tmp_path / "x.zarr"), "--steps", "5"])
    assert (
        res.exit_code != 0 and "--wrapper render" in res.output and len(res.output.strip().splitlines()) <= 2
    )


def test_env_spec_stays_a_dict_for_readers():
    spec = env_spec(CUE)
    assert isinstance(spec, dict) and spec["family"] == spec["kind"] == "gymnasium"
    assert spec["obs_shape"] == [84, 84] and spec["n_actions"] == 3


def test_every_ale_rom_id_round_trips_through_its_env_id():
    """ALE/<CamelCase>-v5 -> ale-py's ROM id for all of them, irregular names included (up_n_down)."""
    from ale_py import roms

    from rise_data.envs import atari_game

    for rom in roms.get_all_rom_ids():
        camel = "".join(part[:1].upper() + part[1:] for part in rom.split("_"))
        assert atari_game(f"ALE/{camel}-v5") == rom, rom


def test_gymnasium_registered_atari_ids_are_atari_with_their_settings(tmp_path):
    """PongNoFrameskip-v4 is what ale_py registers (frameskip 1, no sticky actions, minimal actions), collected
    by the Atari family's vector env; ALE/*-v5 keeps v5's registration with BTR's preprocessing."""
    for env_id, frameskip, sticky, game in (
        ("PongNoFrameskip-v4", 1, 0.0, "pong"),
        ("BreakoutNoFrameskip-v4", 1, 0.0, "breakout"),
        ("PongNoFrameskip-v0", 1, 0.25, "pong"),
        ("ALE/Pong-v5", 4, 0.25, "pong"),
    ):
        spec = build_spec(env_id)
        kw = spec.kwargs
        assert (spec.family, spec.extra["game"], kw["frameskip"]) == ("atari", game, frameskip), env_id
        assert kw["repeat_action_probability"] == sticky and kw["full_action_space"] is False
        assert (kw["maxpool"], kw["noop_max"]) == ((True, 30) if frameskip == 4 else (False, 0))
    path = str(tmp_path / "pong.zarr")
    out = CliRunner().invoke(
        app, ["collect", "PongNoFrameskip-v4", path, "--steps", "20", "--num-envs", "1", "-q"]
    )
    assert out.exit_code == 0, out.output
    store = open_store(path)
    assert (
        store.env["id"] == "PongNoFrameskip-v4" and store.env["kwargs"]["frameskip"] == 1 and store.rows >= 21
    )
