"""The fast online paths give the plain reference loop's numbers (training/reference.py).

Each path runs a tiny CueMemory session from the same seed for the same env steps as the reference loop,
and must leave the same replay (every ring array, the sampler's weights), the same logged losses and
metrics at every gradient step and the same weights: equal to the bit (tolerance 0) on a CPU, where the
same ops run in the same order.

- the overlapped actor thread at policy_lag 0: acts exactly as the reference (ε < 1, the network acts);
- policy_lag 1 and env groups: the actor's weights are one vector step older by design, so these run at
  ε = 1 (every action random, drawn from the same generator); the learner's side must not change;
- replay prefetch: batches gathered in a background thread; it draws one call early, so it is tied to the
  eager replay where nothing is written between draws (offline, uniform sampling).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rise_agent.acting.config import ActingConfig
from rise_agent.config import TrainConfig
from rise_agent.network import NetworkConfig
from rise_agent.replay import ReplayConfig
from rise_agent.training.build import build
from rise_agent.training.offline import run_offline
from rise_agent.training.online import run_online
from rise_agent.training.reference import run_reference
from rise_agent.training.rundir import RunDir
from rise_agent.training.session import Session

RING = ("obs", "action", "reward", "is_first", "is_last", "terminated", "pos", "ok", "written", "open")


def config(**kw) -> TrainConfig:
    base = TrainConfig(
        env="rise/CueMemory-v0",
        env_option=("delay=3", "size=32"),
        screen_size=16,
        encoder="downsample",
        env_steps=4 * 70,
        num_envs=4,
        replay_ratio=2,
        learning_starts=40,
        batch_size=8,
        eps_decay_steps=100,
        log_every=1,
        checkpoint_every=10**6,
        progress=False,
        device="cpu",
        network=NetworkConfig(
            n_actions=1, context_len=4, impala_channels=(4, 4, 4), hidden=16, lstm_hidden=8, n_cos=8
        ),
        replay=ReplayConfig(capacity=4 * 24, prioritized=True),  # 24 rows per env: wraps a few times
    )
    return dataclasses.replace(base, **kw)


def run(cfg: TrainConfig, loop, folder: Path) -> tuple[Session, list[dict]]:
    torch.manual_seed(cfg.seed)
    cfg = dataclasses.replace(cfg, run_dir=str(folder))
    run_dir = RunDir(folder)
    run_dir.prepare()
    s = Session(cfg, build(cfg, torch.device("cpu"), None), run_dir, torch.device("cpu"))
    run_dir.start(cfg)
    s.open_logger(resumed=False)
    loop(s)
    s.logger.close()
    with open(folder / "train.csv") as f:
        rows = [{k: v for k, v in r.items() if k not in ("wall", "time")} for r in csv.DictReader(f)]
    return s, rows


def assert_same_run(a: tuple[Session, list[dict]], b: tuple[Session, list[dict]], online=True) -> None:
    (sa, rows_a), (sb, rows_b) = a, b
    assert sa.counters.updates == sb.counters.updates > 50
    assert sa.counters.env_steps == sb.counters.env_steps and sa.counters.episodes == sb.counters.episodes
    assert rows_a == rows_b  # loss, td, q_mean, grad_norm, ... of every gradient step
    wa, wb = sa.parts.learner.online.state_dict(), sb.parts.learner.online.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    if not online:
        return
    ra, rb = sa.parts.replay.ring, sb.parts.replay.ring
    assert ra.written.min() > 2 * ra.seg  # the ring wrapped
    for name in RING:
        np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=name)
    assert torch.equal(ra.emb, rb.emb)
    np.testing.assert_array_equal(ra.sampler.weights(), rb.sampler.weights())


@pytest.fixture(scope="module")
def greedy_reference(tmp_path_factory):
    return run(config(), run_reference, tmp_path_factory.mktemp("ref"))


@pytest.fixture(scope="module")
def random_reference(tmp_path_factory):
    return run(config(eps_start=1.0, eps_end=1.0), run_reference, tmp_path_factory.mktemp("ref_random"))


def test_actor_thread_at_lag_0_is_the_reference(greedy_reference, tmp_path):
    assert_same_run(greedy_reference, run(config(policy_lag=0), run_online, tmp_path))


def test_replay_prefetch_learns_as_the_eager_replay(cue_store, tmp_path_factory):
    """Prefetch draws the next batch one call early, so it equals the eager replay where nothing is written
    between draws: offline, uniform sampling."""
    net = NetworkConfig(n_actions=1, context_len=0, impala_channels=(4, 4, 4), hidden=16, n_cos=8)
    uniform = ReplayConfig(prioritized=False)
    cfg = config(
        env=None, env_option=(), store=cue_store, updates=60, network=net, replay=uniform, encoder=None
    )
    ref = run(cfg, run_offline, tmp_path_factory.mktemp("a"))
    prefetch = dataclasses.replace(cfg, replay=dataclasses.replace(uniform, prefetch=True))
    assert_same_run(ref, run(prefetch, run_offline, tmp_path_factory.mktemp("b")), online=False)


@pytest.mark.parametrize("groups", [1, 2], ids=["lag1", "lag1-groups2"])
def test_overlapped_actor_and_env_groups_learn_as_the_reference(random_reference, tmp_path, groups):
    cfg = config(eps_start=1.0, eps_end=1.0, policy_lag=1, acting=ActingConfig(env_groups=groups))
    assert_same_run(random_reference, run(cfg, run_online, tmp_path))


def test_reference_loop_is_what_policy_lag_0_runs():
    from rise_agent.training.train import loop_for

    assert loop_for(config(policy_lag=0)) is run_reference
    assert loop_for(config(policy_lag=1)) is run_online


def test_train_policy_lag_0_runs_the_reference_loop_end_to_end(tmp_path):
    """``rise-agent train --policy-lag 0``: the reference loop with the session's logs, an evaluation on
    schedule, the checkpoint; env groups need a lag and are refused in one line."""
    from conftest import TINY_NET, cli_ok
    from typer.testing import CliRunner

    from rise_agent.cli import app

    args = ["train", "--env", "rise/CueMemory-v0", "--env-option", "delay=3", "--encoder", "downsample"]
    args += ["--num-envs", "2", "--env-steps", "120", "--learning-starts", "40", "--batch-size", "8"]
    args += ["--replay-ratio", "4", "--eval-every", "10", "--eval-episodes", "2", "--no-progress", *TINY_NET]
    cli_ok(app, [*args, "--policy-lag", "0", "--run-dir", str(tmp_path / "r")])
    counters = json.loads(torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)["counters"])
    assert counters["env_steps"] == 120
    assert counters["updates"] == (120 - counters["learning_started_at"] + 2) // 4 > 10  # from its step
    assert (tmp_path / "r" / "eval.csv").read_text().count("\n") >= 3  # header, scheduled evaluations, end
    out = CliRunner().invoke(
        app, [*args, "--policy-lag", "0", "--env-groups", "2", "--run-dir", str(tmp_path / "g")]
    )
    assert out.exit_code == 2 and "--policy-lag 1" in out.output
