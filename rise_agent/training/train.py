"""Training: offline pretraining from a store, or online learning in vector envs (from scratch or a store).

``train(config)`` orchestrates: the run directory (:mod:`~rise_agent.training.rundir`), the parts
(:mod:`~rise_agent.training.build`), a :class:`~rise_agent.training.session.Session` over them, and one
of three loops: :mod:`~rise_agent.training.offline` (gradient steps on the store's transitions),
:mod:`~rise_agent.training.reference` (online, the plain serial loop: ``policy_lag`` 0) or
:mod:`~rise_agent.training.online` (online, an actor thread steps the envs while the learner keeps BTR's
replay ratio). Then the end-of-run evaluation, the last checkpoint and the curves. ``resume`` continues a run
from its checkpoint with the same counters.
"""

from __future__ import annotations

import dataclasses
import json

import torch

from rise_agent.config import TrainConfig
from rise_agent.network import count_parameters
from rise_agent.training.build import Parts, allowed_plugins, build
from rise_agent.training.checkpoint import Checkpoint
from rise_agent.training.curves import plot_curves
from rise_agent.training.offline import run_offline
from rise_agent.training.online import run_online
from rise_agent.training.reference import run_reference
from rise_agent.training.rundir import RunDir, RunError
from rise_agent.training.session import Counters, Session
from rise_data import plugins
from rise_data.encode import resolve_device
from rise_data.options import to_json

__all__ = ["TrainConfig", "train"]


def _finished_message(config: TrainConfig, counters: Counters) -> str | None:
    if config.is_online and counters.env_steps >= config.env_steps:
        return f"{counters.env_steps}/{config.env_steps} env steps"
    if not config.is_online and counters.updates >= config.updates:
        return f"{counters.updates}/{config.updates} updates"
    return None


def _open(run: RunDir, config: TrainConfig, resume: bool, device: torch.device) -> Checkpoint | None:
    """The checkpoint to resume from (refusing a finished run), or None after making way for a fresh run."""
    if not resume:
        run.prepare()
        return None
    if not run.exists:
        run.saved_config()  # raises the one-line reason
    ck = run.load(device)
    done = _finished_message(config, Counters.from_json(ck.counters or {}))
    if done:
        target = "--env-steps" if config.is_online else "--updates"
        raise RunError(f"{run.path} already finished ({done}); pass a larger {target} to continue it")
    return ck


def _session(config: TrainConfig, run: RunDir, device: torch.device, ck: Checkpoint | None) -> Session:
    try:
        parts = build(config, device, run.replay_dir)
    except BaseException:
        if ck is None:
            run.discard()  # a start that fails leaves nothing that blocks the next one
        raise
    if ck is None:
        run.start(config)
    else:
        run.resume(config)
    session = Session(config, parts, run, device)
    if ck is not None:
        session.restore(ck)
    elif config.init_checkpoint:
        _load_init(parts, config.init_checkpoint, device)
    return session


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Run (or resume) training; returns the final counters and the last evaluation.

    The plug-ins the config names (:func:`~rise_agent.training.build.allowed_plugins`) are trusted for the run.
    """
    with plugins.trusting(allowed_plugins(config)):
        return _train(config, resume)


def _train(config: TrainConfig, resume: bool) -> dict:
    run = RunDir(config.run_dir)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    ck = _open(run, config, resume, device)
    session = _session(config, run, device, ck)
    _print_config(session)
    session.open_logger(resumed=ck is not None)
    evaluation: dict = {}
    try:
        loop_for(config)(session)
        evaluation = session.evaluate()
    except KeyboardInterrupt:
        print("interrupted: writing a checkpoint; continue with --resume", flush=True)
    finally:
        session.checkpoint()
        session.logger.close()
    plot_curves(run.path)
    return {**session.counters.to_json(), "eval": evaluation, "run_dir": str(run.path)}


def loop_for(config: TrainConfig):
    """The loop a config runs: offline, the plain serial online loop (policy_lag 0), or the overlapped one."""
    if not config.is_online:
        return run_offline
    return run_reference if config.policy_lag == 0 else run_online


def _load_init(parts: Parts, path: str, device: torch.device) -> None:
    """Start from another checkpoint's network (e.g. offline pretraining), online and target alike."""
    init = Checkpoint.load(path, device)
    try:
        parts.learner.online.load_state_dict(init.network)
        parts.learner.target.load_state_dict(init.network)
    except RuntimeError as e:
        raise RunError(f"--init-checkpoint {path} does not fit this network ({str(e)[:120]}...)") from None


def _print_config(s: Session) -> None:
    config, parts = s.config, s.parts
    decided = {
        "env": parts.spec.id,
        "online": config.is_online,
        "encoder": parts.encoder_spec.to_json() if parts.encoder_spec else None,
        "network (derived)": {
            "n_actions": parts.net.n_actions,
            "embed_dim": parts.net.embed_dim,
            "parameters": count_parameters(parts.learner.online),
        },
        "replay": parts.replay.describe(config.batch_size),
        "evaluation": dataclasses.asdict(s.budget),
    }
    if config.progress:
        print(
            "TrainConfig:",
            json.dumps({**to_json(config), "decided": decided}, indent=2, default=str),
            flush=True,
        )
