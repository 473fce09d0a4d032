"""The paper's env families end to end through the CLI at tiny sizes: collect -> encode -> online train -> eval.

Each needs its extra (``pip install -e '.[envs]'``; CI installs it) and is skipped with the reason otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cli_ok, encode_train_eval, requires

from rise_data.cli import app as data_app
from rise_data.envs import build_spec, make_env
from rise_data.store import open_store

FAMILIES = [
    # (env id, family, python package of the extra, frame shape the store holds)
    ("minigrid:MiniGrid-MemoryS7-v0", "minigrid", "minigrid", (56, 56, 3)),
    ("VizdoomMyWayHome-v1", "vizdoom", "vizdoom", (60, 80, 3)),
    ("MiniWorld-TMaze-v0", "miniworld", "miniworld", (60, 80, 3)),
]
# ViZDoom's 240x320 screen is resized so the tiny test stores small frames (the wrapper is recorded)
WRAPPERS = {"vizdoom": ["image_key=screen", "resize=60x80"]}
# MiniWorld's async workers are spawned (EGL cannot cross a fork): ~10 s each on a busy 2-core box, so the
# tiny test runs one env, in process (tests/rise_data/envs/test_envs.py covers async == sync)
ENVS = {"miniworld": "1"}


@pytest.mark.parametrize(
    "env_id,family,frame_shape",
    [pytest.param(e, f, s, marks=requires(p), id=f) for e, f, p, s in FAMILIES],
)
def test_family_collect_encode_train_eval(tmp_path, env_id, family, frame_shape):
    store, run = str(tmp_path / "s.zarr"), str(tmp_path / "run")
    wrappers = [w for item in WRAPPERS.get(family, []) for w in ("--wrapper", item)]
    n = ENVS.get(family, "2")
    cli_ok(data_app, ["collect", env_id, store, "--steps", "60", "--num-envs", n, "--quiet", *wrappers])
    s = open_store(store)
    assert s.env["family"] == family and tuple(s.env["frame_shape"]) == frame_shape
    assert s.read("frame", 0, 1).shape == (1, *frame_shape) and s.read("obs", 0, 1).shape == (1, 84, 84)
    # evaluation rebuilds the env from the spec the store recorded (id, family, wrappers)
    out = encode_train_eval(store, run, n)
    assert env_id in out and f"{n} episodes" in out


@requires("minigrid")
def test_minigrid_memory_view_shows_the_cue():
    """The RGB partial view is what makes MemoryS7 a memory task: the cue object is visible at the start."""
    spec = build_spec("MiniGrid-MemoryS7-v0")
    assert spec.wrappers == ("minigrid_rgb",) and spec.n_actions == 7
    env = make_env(spec, num_envs=2)
    first = env.reset(seed=3)
    assert first.frame.shape == (2, 56, 56, 3) and first.frame.std() > 10  # a rendered view, not blank
    env.close()


@requires("vizdoom")
def test_vizdoom_dict_screen_and_async():
    spec = build_spec("VizdoomMyWayHome-v1")
    assert spec.wrappers == ("image_key=screen",) and spec.frame_shape == (240, 320, 3)
    env = make_env(spec, num_envs=2)
    assert type(env.env.env).__name__ == "AsyncVectorEnv"  # measured faster (benchmarks/collect.py)
    step = env.reset(seed=0)
    step = env.step(np.zeros(2, np.int64))
    assert step.frame.shape == (2, 240, 320, 3)
    env.close()
