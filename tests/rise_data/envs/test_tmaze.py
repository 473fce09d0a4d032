"""rise/TMaze-v0 and its control: the maze's rules under scripted policies, its time limit, seeding, and
collection through the real ``rise-data collect`` CLI."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rise_data.cli import app
from rise_data.envs.errors import EnvError
from rise_data.envs.gymnasium_family import _register_local_envs
from rise_data.envs.tmaze import CORRECT, CUE_COLOURS, FORWARD, LEFT, RIGHT, WRONG, TMazeEnv
from rise_data.store import open_store

_register_local_envs()


def _walk(env: TMazeEnv, answer, seed: int, dawdle: int = 0):
    """Forward to the junction (with ``dawdle`` left/right no-ops at each cell), then ``answer(cue)``."""
    obs, info = env.reset(seed=seed)
    steps, cue = 0, info["cue"]
    for _ in range(env.length):
        for i in range(dawdle):
            obs, r, term, trunc, info = env.step(LEFT if i % 2 else RIGHT)
            assert (r, term, trunc) == (0.0, False, False)
            steps += 1
        obs, r, term, trunc, info = env.step(FORWARD)
        steps += 1
        assert (r, term, trunc) == (0.0, False, False)
    assert info["position"] == env.length
    obs, r, term, trunc, info = env.step(answer(cue))
    return r, term, trunc, steps + 1, info


@pytest.mark.parametrize("seed", range(6))
def test_correct_turn_pays_one_and_wrong_turn_costs_a_tenth(seed):
    env = TMazeEnv(length=6)
    r, term, trunc, steps, info = _walk(env, lambda cue: LEFT + cue, seed)
    assert (r, term, trunc, steps, info["success"]) == (CORRECT, True, False, 7, True)
    r, term, trunc, _, info = _walk(env, lambda cue: RIGHT - cue, seed)
    assert (r, term, trunc, info["success"]) == (WRONG, True, False, False)


def test_both_cues_occur_and_a_fixed_answer_is_right_about_half_the_time():
    env = TMazeEnv(length=3)
    returns = [_walk(env, lambda cue: LEFT, seed)[0] for seed in range(200)]
    share = np.mean([r == CORRECT for r in returns])
    assert 0.4 < share < 0.6 and set(returns) == {CORRECT, WRONG}


def test_turns_in_the_corridor_and_forward_at_the_junction_change_nothing():
    env = TMazeEnv(length=4, max_steps=100)
    r, term, _, steps, _ = _walk(env, lambda cue: LEFT + cue, seed=3, dawdle=3)
    assert (r, term, steps) == (CORRECT, True, 4 * 4 + 1)  # the episode's length depends on the actions
    env.reset(seed=3)
    for _ in range(4):
        env.step(FORWARD)
    for _ in range(5):
        _, r, term, trunc, info = env.step(FORWARD)
        assert (r, term, trunc, info["position"]) == (0.0, False, False, 4)


def test_a_policy_that_never_moves_is_truncated_at_the_time_limit():
    env = TMazeEnv(length=5, max_steps=20)
    env.reset(seed=0)
    ends = []
    for t in range(1, 21):
        _, r, term, trunc, info = env.step(LEFT if t % 2 else RIGHT)
        ends.append((r, term, trunc))
        assert info["position"] == 0
    assert ends[:-1] == [(0.0, False, False)] * 19 and ends[-1] == (0.0, False, True)


def test_the_cue_is_seen_at_the_start_only_and_at_the_junction_in_the_control():
    def cue_visible(obs, cue):
        return bool((obs[24, 24] == CUE_COLOURS[cue]).all())

    for cue_at_junction in (False, True):
        env = TMazeEnv(length=3, cue_at_junction=cue_at_junction)
        obs, info = env.reset(seed=1)
        assert cue_visible(obs, info["cue"])
        seen = []
        for _ in range(3):
            obs, *_ = env.step(FORWARD)
            seen.append(cue_visible(obs, info["cue"]) or cue_visible(obs, 1 - info["cue"]))
        assert seen == [False, False, cue_at_junction]
        assert (obs[-1] == 255).all()  # the junction's bar


def test_the_registered_ids_and_seeding():
    a, b = gym.make("rise/TMaze-v0"), gym.make("rise/TMaze-v0")
    assert gym.make("rise/TMazeVisible-v0").unwrapped.cue_at_junction
    for seed in (0, 7):
        oa, ia = a.reset(seed=seed)
        ob, ib = b.reset(seed=seed)
        assert ia == ib and np.array_equal(oa, ob)
        for action in (FORWARD, LEFT, FORWARD):
            sa, sb = a.step(action), b.step(action)
            assert np.array_equal(sa[0], sb[0]) and sa[1:4] == sb[1:4]
    starts = {gym.make("rise/TMaze-v0").reset(seed=s)[1]["cue"] for s in range(20)}
    assert starts == {0, 1}


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="max_steps > length"):
        TMazeEnv(length=8, max_steps=8)


def test_collect_through_the_cli(tmp_path):
    path = str(tmp_path / "tmaze.zarr")
    args = ["collect", "rise/TMaze-v0", path, "--episodes", "4", "--num-envs", "2", "--quiet"]
    args += ["--env-option", "length=3", "--env-option", "max_steps=12"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    episodes = open_store(path).episodes()
    assert len(episodes["length"]) == 4
    assert all(4 <= n <= 12 for n in episodes["length"])  # the random walk's own lengths, capped by the limit
    assert set(np.round(episodes["return"], 5)) <= {0.0, CORRECT, WRONG}  # stored as float32


def test_step_cost_is_charged_on_every_step_but_the_answer():
    env = TMazeEnv(length=2, step_cost=0.01)
    env.reset(seed=0)
    rewards = [env.step(a)[1] for a in (LEFT, FORWARD, FORWARD, FORWARD)]
    assert rewards == [-0.01] * 4
    _, r, term, _, _ = env.step(LEFT + env._cue)
    assert (r, term) == (CORRECT, True)


def _cue_frames(cue: str, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """The first frame of a cue-0 and a cue-1 episode drawn on the same noise."""
    frames = {}
    for seed in range(40):
        env = TMazeEnv(cue=cue, size=size)
        _, info = env.reset(seed=seed)
        env.np_random = np.random.default_rng(7)  # the same noise for both cues
        frames[info["cue"]] = env._frame()
    return frames[0], frames[1]


def test_texture_cues_differ_in_orientation_only_at_the_same_brightness():
    a, b = _cue_frames("texture")
    assert not np.array_equal(a, b) and np.array_equal(a.transpose(1, 0, 2)[12:36, 12:36], b[12:36, 12:36])
    patch = a[12:36, 12:36]
    assert (patch == 255).mean() == pytest.approx(1 / 3) and (patch[..., 0] == patch[..., 2]).all()


def test_a_16x16_gray_view_cannot_tell_the_texture_cues_apart_but_a_pretrained_encoder_can():
    from rise_data.encode.encoders import make_encoder

    for size in (32, 48, 64):
        a, b = _cue_frames("texture", size)
        small = make_encoder("downsample")(np.stack([a, b]))
        torch.testing.assert_close(small[0], small[1], atol=1e-6, rtol=0)
    a, b = _cue_frames("texture")
    pretrained = make_encoder("efficientnet-lite0-96")(np.stack([a, b]))
    assert (pretrained[0] - pretrained[1]).norm() > 0.1 * pretrained[0].norm()
    colour = make_encoder("downsample")(np.stack(_cue_frames("colour")))
    assert (colour[0] - colour[1]).abs().max() > 0.2  # the colour cues differ in gray level


def test_a_texture_cue_needs_a_size_divisible_by_16():
    with pytest.raises(EnvError, match="texture needs a size divisible by 16"):
        TMazeEnv(cue="texture", size=40)
    with pytest.raises(EnvError, match="cue must be one of"):
        TMazeEnv(cue="shape")
