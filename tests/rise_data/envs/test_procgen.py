"""The procgen family: ids and options, the next-step autoreset contract against procgen itself, and
collect -> encode -> online train -> eval through the CLIs at tiny sizes.

Needs procgen (``make procgen``; docs/envs.md); skipped with that install line otherwise.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from conftest import cli_ok, encode_train_eval
from typer.testing import CliRunner

from rise_data.cli import app as data_app
from rise_data.envs import EnvError, build_spec, make_env
from rise_data.envs.procgen_family import ProcgenVector, _procgen
from rise_data.store import open_store

needs = pytest.mark.skipif(
    importlib.util.find_spec("procgen") is None,
    reason="procgen is not installed: make procgen (.venv/bin/python -m pip install --no-deps -r requirements/procgen.txt)",
)
GAME = "bossfight"  # random play ends an episode in ~40 steps (coinrun: ~2000), so boundaries come quickly


def _rollout(env, actions: np.ndarray):
    """(obs, reward, done) per step of a raw vector env from reset(seed=3), and which steps ignored actions."""
    obs, _ = env.reset(seed=3)
    out, ignored, done = (
        [(obs, np.zeros(env.num_envs), np.zeros(env.num_envs, bool))],
        [],
        np.zeros(env.num_envs, bool),
    )
    for a in actions:
        ignored.append(done.copy())
        obs, reward, done, trunc, _ = env.step(a)
        assert not trunc.any()
        out.append((obs, reward, done))
    env.close()
    return out, np.array(ignored)


@needs
def test_next_step_autoreset_equals_procgen_without_the_ignored_steps():
    """One env: the adapter's trajectory, minus the steps whose action the contract ignores, is procgen's own
    trajectory on the remaining actions (same seed); an ignored step repeats the reset frame with reward 0."""
    actions = np.random.default_rng(0).integers(0, 15, size=(300, 1))
    mine, ignored = _rollout(ProcgenVector(GAME, 1, 1, {}), actions)
    assert ignored.sum() >= 3  # several episode boundaries were crossed
    plain = _procgen().ProcgenGym3Env(num=1, env_name=GAME, rand_seed=3, num_threads=1)
    ref = [plain.observe()]
    for a in actions[~ignored[:, 0]]:
        plain.act(a.astype(np.int32))
        ref.append(plain.observe())
    plain.close()
    kept = [step for step, skip in zip(mine[1:], ignored[:, 0], strict=True) if not skip]
    assert len(kept) + 1 == len(ref)
    for (obs, reward, _), (r_ref, ob_ref, _) in zip([mine[0], *kept], ref, strict=True):
        assert np.array_equal(obs, ob_ref["rgb"]) and np.array_equal(reward, r_ref)
    assert [bool(d[0]) for _, _, d in kept] == [bool(first[0]) for _, _, first in ref[1:]]
    for t in np.flatnonzero(ignored[:, 0]):  # the step after a done: the same reset frame, no reward
        assert np.array_equal(mine[t + 1][0], mine[t][0]) and mine[t + 1][1][0] == 0 and not mine[t + 1][2][0]


@needs
def test_ignored_actions_do_not_reach_the_game():
    """Several envs: changing only the actions the contract ignores changes nothing."""
    actions = np.random.default_rng(1).integers(0, 15, size=(200, 3))
    first, ignored = _rollout(ProcgenVector(GAME, 3, 2, {}), actions)
    assert ignored.sum() >= 5
    other = np.where(ignored, (actions + 7) % 15, actions)
    second, ignored2 = _rollout(ProcgenVector(GAME, 3, 2, {}), other)
    assert np.array_equal(ignored, ignored2)
    for a, b in zip(first, second, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@needs
def test_options_are_recorded_and_reach_procgen():
    spec = build_spec("procgen:maze", 64, distribution_mode="memory", num_levels=1, start_level=7)
    assert spec.family == "procgen" and spec.frame_shape == (64, 64, 3) and spec.n_actions == 15
    assert (
        spec.kwargs["distribution_mode"] == "memory" and spec.kwargs["use_backgrounds"] is True
    )  # defaults too
    # one level: every seed shows the same maze; unbounded levels: seeds differ
    frames = [make_env(spec.to_json(), num_envs=1).reset(seed=s).frame for s in (0, 1)]
    assert np.array_equal(*frames) and frames[0].std() > 10
    open_spec = build_spec("procgen:maze", 64, distribution_mode="memory")
    frames = [make_env(open_spec, num_envs=1).reset(seed=s).frame for s in (0, 1)]
    assert not np.array_equal(*frames)


@needs
@pytest.mark.parametrize(
    "env_id,options,message",
    [
        ("procgen:pong", {}, "procgen has no game 'pong'"),
        (
            "procgen:coinrun",
            {"distribution_mode": "memory"},
            "has no 'memory' mode; games with it: caveflyer",
        ),
        (
            "procgen:coinrun",
            {"distribution_mode": "nightmare"},
            "use one of ['easy', 'hard', 'extreme', 'memory']",
        ),
        ("procgen:coinrun", {"levels": 3}, "unknown procgen option(s) ['levels']"),
        ("procgen:coinrun", {"num_levels": -1}, "num_levels=-1: use an integer >= 0"),
        ("procgen:coinrun", {"center_agent": "yes"}, "['center_agent'] take true or false"),
    ],
)
def test_bad_ids_and_options_refused_in_one_line(env_id, options, message):
    with pytest.raises(EnvError) as e:
        build_spec(env_id, **options)
    assert message in str(e.value) and "\n" not in str(e.value)


@needs
def test_cli_refuses_a_mode_the_game_lacks():
    """Procgen's C++ would end the process; the CLI exits 2 with the line instead."""
    res = CliRunner().invoke(
        data_app,
        [
            "collect",
            "procgen:coinrun",
            "/tmp/never.zarr",
            "--steps",
            "8",
            "--env-option",
            "distribution_mode=memory",
            "--quiet",
        ],
    )
    assert res.exit_code == 2 and "has no 'memory' mode" in res.output


@needs
@pytest.mark.slow
def test_procgen_collect_encode_train_eval(tmp_path):
    store, run = str(tmp_path / "s.zarr"), str(tmp_path / "run")
    opts = ["--env-option", "distribution_mode=easy", "--env-option", "num_levels=50", "--screen-size", "64"]
    cli_ok(
        data_app, ["collect", "procgen:coinrun", store, "--steps", "60", "--num-envs", "2", "--quiet", *opts]
    )
    s = open_store(store)
    assert s.env["family"] == "procgen" and tuple(s.env["frame_shape"]) == (64, 64, 3)
    assert s.env["kwargs"]["distribution_mode"] == "easy" and s.env["kwargs"]["num_levels"] == 50
    assert s.read("frame", 0, 1).shape == (1, 64, 64, 3) and s.read("obs", 0, 1).shape == (1, 64, 64)
    # evaluation rebuilds the env from the spec the store recorded (id, family, options)
    out = encode_train_eval(store, run)
    assert "procgen:coinrun" in out and "2 episodes" in out


def test_missing_procgen_names_the_install_route(monkeypatch):
    monkeypatch.setitem(sys.modules, "procgen", None)  # what `import procgen` meets where it is not installed
    with pytest.raises(EnvError) as e:
        build_spec("procgen:coinrun")
    assert "install it: make procgen (" in str(e.value) and "requirements/procgen.txt" in str(e.value)
