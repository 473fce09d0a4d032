"""The agent view on the device against cv2's (rise_data.envs.to_agent_obs): the difference bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rise_agent.acting.view import agent_view, area_weights
from rise_data.envs import env_spec, make_env, to_agent_obs


def test_area_weights_rows_sum_to_one_and_cover_each_pixel_once():
    for n_in, n_out in [(210, 84), (160, 84), (7, 3), (84, 84)]:
        w = area_weights(n_in, n_out).double()
        torch.testing.assert_close(w.sum(1), torch.ones(n_out, dtype=torch.float64))
        torch.testing.assert_close(w.sum(0) * n_in / n_out, torch.ones(n_in, dtype=torch.float64))


def test_pong_frames_equal_cv2_and_noise_within_one_level():
    env = make_env(env_spec("ALE/Pong-v5"), num_envs=4)
    rng = np.random.default_rng(0)
    steps = [env.reset(seed=0)] + [env.step(rng.integers(env.n_actions, size=4)) for _ in range(40)]
    env.close()
    frames = np.concatenate([s.frame for s in steps])
    np.testing.assert_array_equal(agent_view(torch.from_numpy(frames), 84).numpy(), to_agent_obs(frames, 84))
    noise = np.random.default_rng(1).integers(0, 256, (16, 210, 160, 3), dtype=np.uint8)
    diff = np.abs(agent_view(torch.from_numpy(noise), 84).numpy().astype(int) - to_agent_obs(noise, 84))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    gray = noise[..., 0]
    diff = np.abs(agent_view(torch.from_numpy(gray), 84).numpy().astype(int) - to_agent_obs(gray, 84))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_agent_view_on_cuda_equals_cpu_within_one_level():
    noise = torch.randint(0, 256, (64, 210, 160, 3), dtype=torch.uint8)
    a, b = agent_view(noise, 84), agent_view(noise.cuda(), 84).cpu()
    assert (a.int() - b.int()).abs().max() <= 1


def test_actor_view_on_device_gives_the_same_windows_on_pong():
    from rise_agent.acting.actor import Actor
    from rise_agent.network import NetworkConfig, make_network
    from rise_data.encode.encoders import make_encoder

    env = make_env(env_spec("ALE/Pong-v5"), num_envs=2)
    cfg = NetworkConfig(
        n_actions=env.n_actions,
        context_len=3,
        embed_dim=256,
        lstm_hidden=4,
        impala_channels=(2, 2, 2),
        hidden=4,
    )
    net, enc = make_network(cfg), make_encoder("downsample")
    actors = [Actor(net, enc, 2, view_on_device=v) for v in (False, True)]
    rng = np.random.default_rng(0)
    step = env.reset(seed=0)
    for _ in range(12):
        embs = [a.observe(step) for a in actors]
        assert torch.equal(actors[0].frames(), actors[1].frames()) and torch.equal(embs[0], embs[1])
        step = env.step(rng.integers(env.n_actions, size=2))
    env.close()
