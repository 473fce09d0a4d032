"""The agent observation (rise_data.envs.agent_obs) against cv2's gray + INTER_AREA, and the lazy view."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rise_data.envs import env_spec, make_env
from rise_data.envs.agent_obs import _plan, period_weights, to_agent_obs
from rise_data.envs.vector import ViewStep


def cv2_view(frames: np.ndarray, size: int) -> np.ndarray:
    """The reference, one frame at a time: cv2's gray, then cv2's area resize."""
    out = []
    for f in frames:
        gray = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
        out.append(cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def naive_area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) share of output pixel i that input pixel j covers, by a loop over exact fractions."""
    from fractions import Fraction

    s = Fraction(n_in, n_out)
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        for j in range(n_in):
            overlap = min((i + 1) * s, Fraction(j + 1)) - max(i * s, Fraction(j))
            w[i, j] = float(max(overlap, 0) / s)
    return w


@pytest.mark.parametrize(
    "n_in,n_out", [(210, 84), (160, 84), (96, 84), (100, 84), (168, 84), (7, 3), (84, 84)]
)
def test_period_weights_tile_to_the_area_weights(n_in, n_out):
    k = period_weights(n_in, n_out)
    q, p = k.shape
    assert (k.sum(1) == p).all()
    full = np.zeros((n_out, n_in))
    for r in range(n_in // p):  # the pattern repeats every p inputs and q outputs
        full[r * q : (r + 1) * q, r * p : (r + 1) * p] = k / p
    np.testing.assert_allclose(full, naive_area_weights(n_in, n_out), atol=1e-12)


@pytest.fixture(scope="module")
def pong_frames() -> np.ndarray:
    env = make_env(env_spec("ALE/Pong-v5"), num_envs=4)
    rng = np.random.default_rng(0)
    steps = [env.reset(seed=0)] + [env.step(rng.integers(env.n_actions, size=4)) for _ in range(60)]
    env.close()
    return np.concatenate([s.frame for s in steps])


def test_pong_frames_equal_cv2(pong_frames):
    assert _plan(210, 160, 84) is not None  # the exact path, not the cv2 fallback
    np.testing.assert_array_equal(to_agent_obs(pong_frames, 84), cv2_view(pong_frames, 84))


@pytest.mark.parametrize("shape", [(210, 160, 3), (210, 160), (100, 100, 3), (168, 168)])
def test_noise_within_one_level_of_cv2(shape):
    """cv2's float32 sums stray at exact .5 ties on noise; the exact average is never more than 1 off."""
    noise = np.random.default_rng(1).integers(0, 256, (16, *shape), dtype=np.uint8)
    diff = np.abs(to_agent_obs(noise, 84).astype(int) - cv2_view(noise, 84))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.parametrize(
    "shape,size", [((64, 64, 3), 84), ((210, 160, 3), 64), ((211, 160, 3), 84), ((84, 84), 84)]
)
def test_enlarging_and_long_periods_are_cv2_itself(shape, size):
    noise = np.random.default_rng(2).integers(0, 256, (5, *shape), dtype=np.uint8)
    np.testing.assert_array_equal(to_agent_obs(noise, size), cv2_view(noise, size))


def test_the_view_is_made_once_when_first_read(pong_frames, monkeypatch):
    import rise_data.envs.vector as vector

    calls = []
    monkeypatch.setattr(vector, "to_agent_obs", lambda f, s: calls.append(1) or to_agent_obs(f, s))
    z = np.zeros(4, bool)
    step = ViewStep(pong_frames[:4], 84, pong_frames[:4], np.zeros(4, np.float32), z, z, z)
    assert calls == []  # nothing made before the first read
    np.testing.assert_array_equal(step.obs, cv2_view(pong_frames[:4], 84))
    assert step.obs is step.obs and calls == [1]
