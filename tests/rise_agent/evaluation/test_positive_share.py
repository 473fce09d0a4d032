"""evaluate's ``positive_share`` (success on the goal tasks) against a count over the returned episodes."""

from __future__ import annotations

import torch

from rise_agent.evaluation.evaluate import evaluate
from rise_agent.network import NetworkConfig, make_network
from rise_data.encode.encoders import make_encoder
from rise_data.envs import env_spec


def test_positive_share_counts_the_episodes_with_a_positive_return():
    torch.manual_seed(0)
    cfg = NetworkConfig(
        n_actions=3, context_len=4, embed_dim=256, lstm_hidden=8, impala_channels=(4, 4, 4), hidden=8
    )
    # epsilon 1: random answers, so both +1 and -1 episodes occur among 24
    out = evaluate(
        make_network(cfg),
        make_encoder("downsample"),
        env_spec("rise/CueMemory-v0", delay=2),
        episodes=24,
        epsilon=1.0,
    )
    positive = 0
    for r in out["returns"]:
        positive += r > 0
    assert 0 < positive < 24
    assert out["positive_share"] == positive / 24
