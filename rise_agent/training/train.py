"""Training: offline pretraining from a store, or online learning in vector envs (from scratch or a store).

``train(config)`` = a run directory (:mod:`rise_agent.training.rundir`) + the builder (:mod:`rise_agent.training.build`) +
one of two loops. Offline: gradient steps on the store's transitions. Online: an actor thread steps the
envs (frozen encoder included) while the learner files each vector step into replay and takes exactly
``num_envs / replay_ratio`` gradient steps per vector step once ``learning_starts`` online transitions
are in (:mod:`rise_agent.acting.thread`). Finished episodes can be kept as a store (``--save-store``) with the
embeddings the actor computed. Checkpoints are atomic; ``resume`` continues with the same counters.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rise_agent.acting.actor import Actor, epsilon_schedule
from rise_agent.config import TrainConfig
from rise_agent.training.build import Parts, build
from rise_agent.training.checkpoint import capture_rng, restore_rng
from rise_agent.training.rundir import Logger, RunDir, RunError
from rise_data.encode import resolve_device
from rise_data.options import to_json

__all__ = ["TrainConfig", "plot_curves", "train"]


class _Run:
    """One training run in progress: parts, counters, logger, checkpointing and evaluation."""

    def __init__(self, config: TrainConfig, parts: Parts, run: RunDir, device: torch.device):
        self.config, self.parts, self.run, self.device = config, parts, run, device
        self.counters = {"updates": 0, "env_steps": 0, "episodes": 0, "wall": 0.0}
        self.rng = np.random.default_rng(config.seed)
        self.logger: Logger | None = None
        self.t0 = time.time()
        self.last_ckpt = 0

    # -- checkpoints -----------------------------------------------------------------------------
    def payload(self) -> dict:
        p = self.parts
        return {
            "network": p.learner.online.state_dict(),
            "learner": p.learner.state_dict(),
            "network_config": json.dumps(dataclasses.asdict(p.net)),
            "encoder": json.dumps(p.encoder_spec.to_json() if p.encoder_spec else None),
            "env": json.dumps(p.spec),
            "train_config": json.dumps(to_json(self.config)),
            "counters": json.dumps(self.counters),
            "rng": capture_rng(self.rng),
            "replay": p.replay.state_dict(),
        }

    def checkpoint(self) -> None:
        self.counters["wall"] = time.time() - self.t0
        self.run.save(self.payload())
        self.last_ckpt = self.counters["updates"]

    def maybe_checkpoint(self) -> None:
        if self.counters["updates"] - self.last_ckpt >= self.config.checkpoint_every:
            self.checkpoint()

    def restore(self, ck: dict) -> None:
        self.parts.learner.load_state_dict(ck["learner"])
        if "replay" in ck:
            self.parts.replay.load_state_dict(ck["replay"])  # the online ring continues from its files
        self.counters = {**self.counters, **json.loads(ck["counters"])}
        self.rng = restore_rng(ck["rng"])
        self.t0 = time.time() - self.counters.get("wall", 0.0)
        self.last_ckpt = self.counters["updates"]

    # -- learning and evaluation -----------------------------------------------------------------
    def learn(self, n: int, pay: bool = False) -> None:
        """``n`` gradient steps; ``pay``: each one settles a step the online loop owes (``counters["owed"]``)."""
        p, c = self.parts, self.config
        for _ in range(n):
            batch = p.replay.sample(c.batch_size, self.rng)
            metrics, prio = p.learner.step(batch)
            p.replay.update_priorities(batch.index, prio)
            self.counters["updates"] += 1
            if pay:
                self.counters["owed"] -= 1
            if self.counters["updates"] % c.log_every == 0:
                self.logger.log("train", self.counters, {"wall": time.time() - self.t0, **metrics})

    def evaluate(self) -> dict:
        """BTR's evaluation protocol (noise off, its ε for this many env steps); raw-only results say why."""
        from rise_agent.evaluation.evaluate import btr_eval_epsilon, evaluate

        c = self.config
        out = evaluate(
            self.parts.learner.online,
            self.parts.frozen_encoder(c, self.device),
            self.parts.spec,
            episodes=c.eval_episodes,
            epsilon=btr_eval_epsilon(self.counters["env_steps"]),
            seed=c.seed + 10_000,
            max_steps=c.eval_max_steps,
        )
        row = {k: v for k, v in out.items() if isinstance(v, int | float)}
        row["human_normalized"] = float("nan") if out["human_normalized"] is None else out["human_normalized"]
        row["raw_only"] = int(out["raw_only"])
        row["score_note"] = out["score_note"]
        self.logger.log("eval", self.counters, {"wall": time.time() - self.t0, **row})
        return out

    def eval_due(self, before: int) -> bool:
        every = self.config.eval_every
        return bool(every) and self.counters["updates"] // every > before // every


def _finished_message(config: TrainConfig, counters: dict) -> str | None:
    if config.is_online and counters["env_steps"] >= config.env_steps:
        return f"{counters['env_steps']}/{config.env_steps} env steps"
    if not config.is_online and counters["updates"] >= config.updates:
        return f"{counters['updates']}/{config.updates} updates"
    return None


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Run (or resume) training; returns the final counters and the last evaluation."""
    run = RunDir(config.run_dir)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if resume and not run.exists:
        run.saved_config()  # raises the one-line reason
    ck = run.load(device) if resume else None
    if ck is not None:
        done = _finished_message(config, json.loads(ck["counters"]))
        if done:
            target = "--env-steps" if config.is_online else "--updates"
            raise RunError(f"{run.path} already finished ({done}); pass a larger {target} to continue it")
    if not resume:
        run.prepare()
    try:
        parts = build(config, device, run.replay_dir)
    except BaseException:
        if not resume:
            run.discard()  # a start that fails leaves nothing that blocks the next one
        raise
    if resume:
        run.resume(config)
    else:
        run.start(config)
    r = _Run(config, parts, run, device)
    if ck is not None:
        r.restore(ck)
    elif config.init_checkpoint:
        _load_init(parts, config.init_checkpoint, device)
    _print_config(config, parts)
    r.logger = run.logger(r.counters if resume else None)
    evaluation: dict = {}
    try:
        if config.is_online:
            from rise_agent.training.online import run_online

            run_online(r)
        else:
            _offline(r)
        evaluation = r.evaluate()
    except KeyboardInterrupt:
        print("interrupted: writing a checkpoint; continue with --resume", flush=True)
    finally:
        r.checkpoint()
        r.logger.close()
    plot_curves(run.path)
    return {**r.counters, "eval": evaluation, "run_dir": str(run.path)}


def _load_init(parts: Parts, path: str, device: torch.device) -> None:
    from rise_agent.training.checkpoint import load_checkpoint

    init = load_checkpoint(path, device)
    try:
        parts.learner.online.load_state_dict(init["network"])
        parts.learner.target.load_state_dict(init["network"])
    except (KeyError, RuntimeError) as e:
        raise RunError(f"--init-checkpoint {path} does not fit this network ({str(e)[:120]}...)") from None


def _print_config(config: TrainConfig, parts: Parts) -> None:
    decided = {
        "env": parts.spec["id"],
        "online": config.is_online,
        "encoder": parts.encoder_spec.to_json() if parts.encoder_spec else None,
        "network (derived)": {"n_actions": parts.net.n_actions, "embed_dim": parts.net.embed_dim},
        "replay": parts.replay.describe(config.batch_size),
    }
    if config.progress:
        print(
            "TrainConfig:",
            json.dumps({**to_json(config), "decided": decided}, indent=2, default=str),
            flush=True,
        )


def _offline(r: _Run) -> None:
    c = r.config
    bar = tqdm(
        total=c.updates, initial=r.counters["updates"], unit="update", disable=not c.progress, desc="offline"
    )
    while r.counters["updates"] < c.updates:
        before = r.counters["updates"]
        n = min(c.log_every, c.updates - before)
        r.learn(n)
        bar.update(n)
        r.maybe_checkpoint()
        if r.eval_due(before):
            r.evaluate()
    bar.close()


def make_actor(r: _Run, network) -> Actor:
    """The acting side's Actor over ``network`` (the actor thread's copy of the learner's network)."""
    net = r.parts.net
    return Actor(
        network,
        r.parts.frozen_encoder(r.config, r.device),
        r.config.num_envs,
        frame_stack=net.frame_stack,
        context_len=net.context_len,
        device=r.device,
    )


def epsilon_at(config: TrainConfig, env_steps: int) -> float:
    return epsilon_schedule(
        env_steps, config.eps_start, config.eps_end, config.eps_decay_steps, config.eps_disable_after
    )


def plot_curves(run_dir: Path) -> Path | None:
    """learning_curve.png from the run's CSV files (episode returns, evaluation, loss)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def read(name: str) -> list[dict]:
        path = run_dir / f"{name}.csv"
        if not path.exists():
            return []
        with path.open() as f:
            return list(csv.DictReader(f))

    train_rows, ep_rows, eval_rows = read("train"), read("episodes"), read("eval")
    if not (train_rows or ep_rows or eval_rows):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if ep_rows:
        axes[0].plot(
            [float(r["env_steps"]) for r in ep_rows],
            [float(r["return"]) for r in ep_rows],
            ".",
            alpha=0.4,
            label="training episodes",
        )
    if eval_rows:
        axes[0].plot(
            [float(r["env_steps"]) for r in eval_rows],
            [float(r["mean"]) for r in eval_rows],
            "o-",
            label="evaluation (mean)",
        )
    axes[0].set_xlabel("env steps")
    axes[0].set_ylabel("return")
    if ep_rows or eval_rows:
        axes[0].legend()
    if train_rows:
        axes[1].plot([float(r["updates"]) for r in train_rows], [float(r["loss"]) for r in train_rows])
        axes[1].set_xlabel("gradient steps")
        axes[1].set_ylabel("loss")
        axes[1].set_yscale("log")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
