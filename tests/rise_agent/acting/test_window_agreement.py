"""The actor and the replay see the same frame stacks and context windows (rise_data.windows' one rule).

One run of real CueMemory envs (6-row episodes, so starts fall inside every window) is fed through an
:class:`Actor` and a :class:`Replay` whose ring wraps several times; at every step each env's window on
the acting side equals the replay's window at that env's newest row, and every batch the replay samples
holds exactly the windows the actor acted on at those rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rise_agent.acting.actor import Actor
from rise_agent.network import NetworkConfig, make_network
from rise_agent.replay import Replay, ReplayConfig
from rise_data.encode.encoders import make_encoder
from rise_data.envs import env_spec, make_env

ENVS = 3


def replay_windows(replay: Replay):
    """Each env's frame stack, context and mask at its newest ring row, through the ring's window."""
    ring, (S, K) = replay.ring, replay.windows
    rows = ring.newest()
    srows, _ = ring.window(rows, S)
    crows, mask = ring.window(rows, K)
    ctx = ring.emb[torch.from_numpy(np.where(mask, crows, ring.num_rows))]
    return torch.from_numpy(ring.obs[srows]), ctx, torch.from_numpy(mask)


@pytest.mark.parametrize("k,stack", [(8, 4), (3, 5)])
def test_actor_and_replay_windows_are_equal_at_every_step(k, stack):
    torch.manual_seed(0)
    env = make_env(env_spec("rise/CueMemory-v0", delay=3), num_envs=ENVS)
    encoder = make_encoder("downsample")
    net = NetworkConfig(
        n_actions=env.n_actions,
        context_len=k,
        frame_stack=stack,
        embed_dim=encoder.dim,
        frame_hw=tuple(env.obs_shape),
        lstm_hidden=8,
        impala_channels=(4, 4, 4),
        hidden=8,
    )
    actor = Actor(make_network(net), encoder, ENVS)
    seg = max(k, stack) + 3 + 2  # lookback + n_step + 2 rows per env: the ring wraps every few episodes
    replay = Replay(
        ReplayConfig(capacity=ENVS * seg, n_step=3, prioritized=False),
        env.obs_shape,
        encoder.dim,
        ENVS,
        network=net,
    )
    rng = np.random.default_rng(0)
    acted: dict[int, tuple] = {}  # ring row -> the windows the actor acted on when that row was newest
    step, actions, starts_inside = env.reset(seed=0), None, 0
    for t in range(12 * seg):
        emb = actor.observe(step)
        if actions is None:
            replay.add_first(step.obs, emb)
        else:
            replay.add(actions, step, emb)
        frames, (ctx, mask) = actor.frames(), actor.context()
        want = replay_windows(replay)
        assert torch.equal(frames, want[0]), t
        assert torch.equal(ctx, want[1]) and torch.equal(mask, want[2]), t
        starts_inside += int((~mask[:, 0] & mask[:, -1]).sum())
        for e, row in enumerate(replay.ring.newest()):
            acted[int(row)] = (frames[e], ctx[e], mask[e])
        if replay.online_transitions >= 16 and t % 5 == 0:
            batch = replay.sample(16, rng)
            for i, row in enumerate(batch.index):
                f, c, m = acted[int(row)]
                assert torch.equal(batch.frames[i], f) and torch.equal(batch.context[i], c)
                assert torch.equal(batch.mask[i], m)
        actions = actor.act(0.3, rng)
        step = env.step(actions)
    env.close()
    assert replay.ring.written.min() > 3 * seg  # wrapped at least three times
    assert starts_inside > 10  # episode starts inside the window, seen many times
