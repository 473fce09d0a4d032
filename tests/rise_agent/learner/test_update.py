"""rise_agent.update.loss and the Learner built on it give the landed head's learner (3be2990) its numbers:
same initial weights, seed and fixed batches give equal losses, metrics, priorities and updated weights.

The head runs from its own tree (its network and losses too) in a child process (benchmarks/learner_speed.py).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

from learner_speed import HEAD, head_tree, job, make_batch, run_at, work  # noqa: E402

from rise_agent.learner import METRICS, Learner, LearnerConfig  # noqa: E402
from rise_agent.network import NetworkConfig  # noqa: E402
from rise_agent.update import Stats, loss  # noqa: E402

STEPS = 3
CASES = {
    "k0": (0, {}),
    "k16": (16, {}),
    "k16_target_policy_cql": (16, {"munchausen_policy": "target", "cql_alpha": 0.5}),
    "k16_plain_iqn_target_copy": (16, {"munchausen": False, "target_update": 2}),
}
# measured on this CPU: losses equal to the last bit (one case 1e-7 relative), priorities within 2e-6, weights
# after 3 steps within 7e-8 (Adam's fused kernel against the head's per-parameter loop)
RTOL, ATOL = 1e-5, 1e-6


def _jobs() -> dict[str, dict]:
    out = {}
    for name, (k, cfg) in CASES.items():
        torch.manual_seed(0)
        init = Learner(NetworkConfig(**job(k, cfg, "steps")["net"]), LearnerConfig(**cfg), "cpu").online
        batches = [make_batch(k, seed=i) for i in range(STEPS)]
        out[name] = job(k, {"lr": 1e-3, **cfg}, "steps", batches=batches, seed=1, init=init.state_dict())
    return out


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[dict, dict]]:
    jobs = _jobs()
    head = run_at(head_tree(HEAD), list(jobs.values()))
    return {
        name: (h, work(spec) | {"spec": spec}) for (name, spec), h in zip(jobs.items(), head, strict=True)
    }


@pytest.mark.parametrize("case", list(CASES))
def test_learner_steps_equal_the_heads(runs, case):
    head, new = runs[case]
    for (m0, p0), (m1, p1) in zip(head["steps"], new["steps"], strict=True):
        assert set(m1) == set(METRICS)
        for key in METRICS:
            if math.isnan(m0[key]):
                assert math.isnan(m1[key]), key
            else:
                assert m1[key] == pytest.approx(m0[key], rel=RTOL, abs=ATOL), key
        np.testing.assert_allclose(p1, p0, rtol=RTOL, atol=ATOL)
    assert head["weights"].keys() == new["weights"].keys()
    for name, w in head["weights"].items():
        torch.testing.assert_close(new["weights"][name], w, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", list(CASES))
def test_loss_is_the_heads_first_step(runs, case):
    """loss() alone, before any optimiser step: the head's first-step loss, cql, q_mean and priorities."""
    head, new = runs[case]
    spec = new["spec"]
    torch.manual_seed(0)
    learner = Learner(NetworkConfig(**spec["net"]), LearnerConfig(**spec["learner"]), "cpu")
    learner.online.load_state_dict(spec["init"])
    learner.target.load_state_dict(spec["init"])
    torch.manual_seed(spec["seed"])
    total, priority, stats = loss(learner.online, learner.target, spec["batches"][0], learner.config)
    assert isinstance(stats, Stats) and total.requires_grad and not priority.requires_grad
    metrics, prio = head["steps"][0]
    assert total.item() == pytest.approx(metrics["loss"], rel=RTOL, abs=ATOL)
    for key in ("td", "cql", "q_mean", "gate_mean", "lstm_std"):
        value = float(getattr(stats, key))
        assert (math.isnan(value) and math.isnan(metrics[key])) or value == pytest.approx(
            metrics[key], rel=RTOL, abs=ATOL
        ), key
    np.testing.assert_allclose(priority.numpy(), prio, rtol=RTOL, atol=ATOL)
