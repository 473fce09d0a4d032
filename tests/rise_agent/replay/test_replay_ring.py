"""The online ring against a naive log of the same steps: wrap-around, truncation, resets, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from replay_reference import CUE, Driver, synthetic_steps, windows

from rise_agent.replay import Replay, ReplayConfig
from rise_data.envs import Step, env_spec, make_env


def test_online_real_env_with_wraparound():
    env = make_env(env_spec(CUE), num_envs=3)
    cfg = ReplayConfig(capacity=300, n_step=3, prioritized=False, reward_clip=0.5)
    rp = Replay(cfg, obs_shape=env.obs_shape, embed_dim=16, num_envs=3, **windows(8))
    d = Driver(rp, 16, seed=0)
    rng = np.random.default_rng(0)
    d.first(env.reset(seed=0).obs)
    d.check_current()
    for i in range(330):  # 331 rows per env in 100-row segments: three wraps, 33-row episodes across them
        actions = rng.integers(0, env.n_actions, 3)
        d.step(actions, env.step(actions))
        if i % 33 == 0 or i > 320:
            d.check_all(rng)
            d.check_current()
    env.close()
    assert all(log.terminated.count(True) >= 9 for log in d.logs)


@pytest.mark.parametrize("context_len,n_step,frame_stack", [(8, 3, 4), (0, 1, 4), (12, 5, 2)])
def test_online_synthetic_truncation_resets_and_long_episodes(context_len, n_step, frame_stack):
    cfg = ReplayConfig(capacity=4 * 60, n_step=n_step, prioritized=False)
    rp = Replay(cfg, obs_shape=(6, 6), embed_dim=5, num_envs=4, **windows(context_len, frame_stack))
    d = Driver(rp, 5, seed=1)
    rng = np.random.default_rng(2)
    d.first(rng.integers(0, 256, (4, 6, 6), dtype=np.uint8))
    for i, step in enumerate(synthetic_steps(4, 400, rng, cut=0.01)):
        d.step(rng.integers(0, 6, 4), step)
        if i == 150:  # a reset without a done: open episodes are cut as truncated
            d.first(rng.integers(0, 256, (4, 6, 6), dtype=np.uint8))
            d.first(rng.integers(0, 256, (4, 6, 6), dtype=np.uint8))  # and a 0-action episode
        if i % 9 == 0:
            d.check_all(rng)
            d.check_current()
    logs = d.logs
    assert any(log.terminated.count(True) for log in logs)
    assert any(sum(la and not te for la, te in zip(log.is_last, log.terminated, strict=True)) for log in logs)


def test_online_refusals():
    with pytest.raises(ValueError, match="rows per env"):
        Replay(ReplayConfig(capacity=3 * 80), num_envs=3, **windows(80))
    rp = Replay(ReplayConfig(capacity=300), embed_dim=3, num_envs=3, obs_shape=(6, 6), **windows(4))
    with pytest.raises(ValueError, match="emb of shape"):
        rp.add_first(np.zeros((3, 6, 6), np.uint8), None)
    rp.add_first(np.zeros((3, 6, 6), np.uint8), torch.zeros(3, 3))
    z = np.zeros(3, bool)
    rp.add(
        np.zeros(3), Step(np.zeros((3, 6, 6), np.uint8), None, np.zeros(3), z | True, z, z), torch.zeros(3, 3)
    )
    with pytest.raises(ValueError, match="continued after their episode ended"):
        rp.add(
            np.zeros(3), Step(np.zeros((3, 6, 6), np.uint8), None, np.zeros(3), z, z, z), torch.zeros(3, 3)
        )
    with pytest.raises(ValueError, match="no sampleable"):
        Replay(ReplayConfig(capacity=300), num_envs=3, obs_shape=(6, 6), **windows(0)).sample(
            4, np.random.default_rng()
        )
