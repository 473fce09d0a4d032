"""The online loop's overhead budget, measured in one run on this machine (issue 9).

Same env, envs, env steps and gradient steps for every variant:

- raw:        the vector env stepped with random actions, nothing else;
- acting:     the online loop with learning switched off (actor thread: network + frozen encoder forward,
              env step; learner thread: replay adds, episode bookkeeping);
- learning:   the same number of gradient steps on the filled replay, no acting;
- serial:     the plain serial loop with learning on (policy_lag 0, training/reference.py);
- overlapped: the loop with learning on, policy_lag 1 (acting runs while the learner learns).

Printed ratios: (a) acting / raw throughput (goal >= 0.80), (b) overlapped wall / max(acting, learning)
(goal <= 1.2; serial would be about their sum), (c) learner step RISE K / BTR K=0 at the same batch,
(d) frames/s of the overlapped loop (Atari frameskip 4), (e) the actor thread alone with 1 and 2 env
groups / max(raw stepping, the actor's inference alone) (goal <= 1.2 with 2 groups). The last line is
one JSON object: ``overlap_k{K}`` (run once with --k 0 and once with --k 80), ``acting_overlap``. On CPUs each side's torch threads are pinned
(``--threads``) so the overlap is visible; the ALE vector env runs its own C++ threads.

Usage: python benchmarks/online.py [--env ALE/Pong-v5] [--num-envs 16] [--steps 48] [--encoder downsample]
       [--k 80] [--batch 32] [--threads 1] [--device auto]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rise_agent.config import TrainConfig
from rise_agent.learner import Learner
from rise_agent.network import NetworkConfig
from rise_agent.training.build import build
from rise_agent.training.rundir import RunDir
from rise_agent.training.session import Session
from rise_agent.training.train import loop_for
from rise_data.encode import resolve_device
from rise_data.envs import make_env

SMALL = {"impala_channels": (8, 16, 16), "hidden": 64, "lstm_hidden": 64}


def raw_stepping(spec: dict, num_envs: int, steps: int, seed: int = 0) -> float:
    """Seconds for ``steps`` vector steps with random actions."""
    env = make_env(spec, num_envs=num_envs)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)  # construction and reset are outside the timing, as in online_run
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(env.n_actions, size=num_envs))
    dt = time.perf_counter() - t0
    env.close()
    return dt


def online_run(config: TrainConfig, device: torch.device, folder: Path, learn_after: int | None = None):
    """(seconds in the loop after the first reset, the Session); ``learn_after=None`` keeps learning off."""
    cfg = dataclasses.replace(
        config,
        run_dir=str(folder),
        learning_starts=10**12 if learn_after is None else learn_after,
    )
    parts = build(cfg, device, None)
    run = RunDir(folder)
    run.prepare()
    run.start(cfg)
    s = Session(cfg, parts, run, device)
    s.open_logger(resumed=False)
    loop_for(cfg)(s)  # policy_lag 0: the plain serial loop; >= 1: the overlapped actor thread
    s.logger.close()
    return s.counters.loop_seconds, s  # from the first reset on: env construction is not the loop's cost


def acting_only(spec, parts, config: TrainConfig, device, groups: int) -> tuple[float, float]:
    """(seconds of the actor thread over ``config.env_steps`` env steps with ``groups`` env groups, and
    seconds of the same actor's inference alone over as many vector steps, 1 group only); nothing learns."""
    from rise_agent.acting.config import ActingConfig
    from rise_agent.acting.groups import acting_env
    from rise_agent.acting.thread import ActingThread, WeightGate, actor_copy
    from rise_agent.training.reference import make_actor
    from rise_data.collect.rollout import Rollout

    steps = config.env_steps // config.num_envs
    s = Session(config, parts, None, device)
    actor = make_actor(s, actor_copy(parts.learner.online))
    acting = ActingConfig(env_groups=groups)
    env = acting_env(spec, config.num_envs, acting)
    gate = WeightGate(1)
    th = ActingThread(
        Rollout(env), actor, gate, lambda t: 0.01, np.random.default_rng(0), steps, seed=0, config=acting
    )
    th.start()
    th.get()
    t0 = time.perf_counter()
    for t in range(steps):
        th.get()
        if t + 2 < steps:
            gate.publish(t, lambda: None)
    dt = time.perf_counter() - t0
    th.stop()
    env.close()
    if groups > 1:  # the thread's group actors observed; this one did not
        return dt, float("nan")
    t0 = time.perf_counter()
    for _ in range(steps):  # the actor's own work per vector step: noise, forward, argmax (observed once)
        actor.greedy()
    return dt, time.perf_counter() - t0


def learner_step_ms(net: NetworkConfig, batch: int, device, reps: int = 10) -> float:
    """ms per Learner.step on a synthetic batch of the replay's shape (benchmarks/learner_step.py's)."""
    from learner_step import batch as synthetic_batch  # this folder is on sys.path when run as a script

    from rise_agent.learner import LearnerConfig

    learner = Learner(net, LearnerConfig(), device)
    b = synthetic_batch(batch, net.context_len, net.embed_dim, net.n_actions, device)
    learner.step(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        learner.step(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--steps", type=int, default=48, help="vector steps measured per variant")
    p.add_argument("--encoder", default="downsample")
    p.add_argument("--k", type=int, default=80)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads per side (0: leave as is)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--small", action="store_true", help="a small network (Impala 8/16/16, 64 hidden): loop costs show"
    )
    p.add_argument(
        "--acting-reps", type=int, default=3, help="interleaved actor-thread runs per env grouping"
    )
    a = p.parse_args()
    device = resolve_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    # one gradient step per vector step, as BTR (64 envs, replay ratio 64)
    base = TrainConfig(
        env=a.env, encoder=a.encoder, num_envs=a.num_envs, replay_ratio=a.num_envs, batch_size=a.batch,
        env_steps=a.steps * a.num_envs, eval_episodes=1, progress=False, checkpoint_every=10**9,
        network=dataclasses.replace(TrainConfig().network, context_len=a.k, **(SMALL if a.small else {})),
        replay=dataclasses.replace(TrainConfig().replay, capacity=max(4096, 4 * a.steps * a.num_envs)),
    )  # fmt: skip
    spec = build(
        dataclasses.replace(base, network=dataclasses.replace(base.network, context_len=0)), device
    ).spec
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t_raw = raw_stepping(spec, a.num_envs, a.steps)
        t_act, r = online_run(base, device, tmp / "act")
        updates = a.steps * a.num_envs // base.replay_ratio
        t0 = time.perf_counter()
        r.learn(updates)  # on the replay the acting run filled
        t_learn = time.perf_counter() - t0
        runs = {1: [], 2: [], "inf": []}
        for _ in range(a.acting_reps):  # interleaved, medians: load drift hits both alike
            t1, ti = acting_only(spec, r.parts, base, device, groups=1)
            runs[1].append(t1)
            runs["inf"].append(ti)
            runs[2].append(acting_only(spec, r.parts, base, device, groups=2)[0])
        t_act1, t_act2, t_inf = (float(np.median(runs[k])) for k in (1, 2, "inf"))
        # learning from the first vector step a batch is in, so both sides run over (almost) every step
        warm = a.batch
        t_serial, rs = online_run(dataclasses.replace(base, policy_lag=0), device, tmp / "serial", warm)
        t_over, ro = online_run(dataclasses.replace(base, policy_lag=1), device, tmp / "over", warm)
    net = r.parts.net
    ms_rise = learner_step_ms(net, a.batch, device)
    ms_btr = learner_step_ms(dataclasses.replace(net, context_len=0), a.batch, device)
    env_steps = a.steps * a.num_envs
    print(f"machine: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"{torch.get_num_threads()} torch threads/side, env {a.env} x{a.num_envs}, {a.steps} vector steps, "
          f"K={a.k} ({a.encoder}), batch {a.batch}, {updates} updates, {'small' if a.small else 'BTR'} network")  # fmt: skip
    print(f"raw stepping      {t_raw:7.2f} s  ({env_steps / t_raw:8.0f} env steps/s)")
    print(f"acting (no learn) {t_act:7.2f} s  ({env_steps / t_act:8.0f} env steps/s)")
    print(f"learning alone    {t_learn:7.2f} s  ({updates / t_learn:8.1f} updates/s)")
    print(f"serial  (lag 0)   {t_serial:7.2f} s  updates {rs.counters.updates}")
    print(
        f"overlap (lag 1)   {t_over:7.2f} s  updates {ro.counters.updates}, max lag {ro.counters.max_policy_lag}"
    )
    print(f"(a) acting / raw throughput            {t_raw / t_act:.3f}  (goal >= 0.80)")
    print(f"(b) overlapped / max(acting, learning)  {t_over / max(t_act, t_learn):.3f}  (goal <= 1.2; "
          f"serial / max = {t_serial / max(t_act, t_learn):.3f}, sum / max = {(t_act + t_learn) / max(t_act, t_learn):.3f})")  # fmt: skip
    print(
        f"(c) learner step K={a.k} / K=0          {ms_rise / ms_btr:.3f}  ({ms_rise:.1f} ms vs {ms_btr:.1f} ms)"
    )
    print(f"(d) frames/s overlapped                 {4 * env_steps / t_over:.0f}")
    base_act = max(t_raw, t_inf)
    print(
        f"actor thread alone: 1 env group {t_act1:.2f} s, 2 groups {t_act2:.2f} s; inference alone {t_inf:.2f} s"
    )
    print(
        f"(e) acting / max(raw, inference): 1 group {t_act1 / base_act:.3f}, 2 groups {t_act2 / base_act:.3f} (goal <= 1.2)"
    )
    ratios = {
        f"overlap_k{a.k}": round(t_over / max(t_act, t_learn), 3),
        f"serial_k{a.k}": round(t_serial / max(t_act, t_learn), 3),
        "acting_overlap": round(t_act2 / base_act, 3),
        "acting_overlap_1group": round(t_act1 / base_act, 3),
        "acting_vs_raw": round(t_raw / t_act, 3),
        f"step_k{a.k}_vs_k0": round(ms_rise / ms_btr, 3),
    }
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    print(json.dumps({"ratios": ratios, "machine": f"{machine}, load {os.getloadavg()[0]:.2f}"}))


if __name__ == "__main__":
    main()
