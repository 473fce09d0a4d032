"""Evaluation: whole episodes with parameter noise off, raw and human-normalised scores, recordings.

``evaluate`` runs the network greedily (eval mode, noise off; optional ε-greedy on top:
:func:`btr_eval_epsilon` is BTR's) in ``make_env(spec)`` through the same :class:`~rise_agent.acting.actor.Actor`
that acts during training. Each env is given a fixed quota of episodes up front, so short episodes are
not over-represented the way "the first N episodes to finish" (BTR's main.py:65-78) would make them.
Its random draws come from its own generators, seeded by ``seed``: a numpy ``Generator`` for ε and a
``torch.Generator`` for IQN's tau samples. Torch's global RNG is never read or reseeded, so a
training-time evaluation is reproducible and leaves the actor thread, which draws from it, alone.

Honest scores: every episode records how it ended (``terminated``, ``truncated`` by the env's own time
limit, or ``cut`` by ``max_steps``); :mod:`~rise_agent.evaluation.scores` turns that into a
human-normalised score or the reason there is none. Recordings: :mod:`~rise_agent.evaluation.video`.

``load_agent`` rebuilds a network and its frozen encoder from a checkpoint, read through
:class:`rise_agent.training.checkpoint.Checkpoint` (the one schema).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rise_agent.acting.actor import Actor
from rise_agent.evaluation.scores import score_note
from rise_agent.evaluation.video import RECORD_MAX_FRAMES, VIDEO_SUFFIXES, record_frame, write_video
from rise_agent.network import RiseNetwork, default_channels_last, disable_noise, make_network
from rise_agent.training.checkpoint import Checkpoint, CheckpointError
from rise_data.collect.rollout import Rollout
from rise_data.encode.encoders import Encoder
from rise_data.envs import make_env
from rise_data.options import ConfigError

__all__ = ["btr_eval_epsilon", "evaluate", "load_agent", "own_taus"]

# BTR evaluates with ε = 0.01 for its first 126 evaluations, one per 250K env steps (1M frames), then with
# ε = 0 (main.py:61-64: "index <= 125"); 126 * 250K env steps = 126M frames.
BTR_EVAL_EPS_UNTIL = 31_500_000


def btr_eval_epsilon(env_steps: int) -> float:
    """BTR's evaluation ε for a network trained ``env_steps`` env steps: 0.01 up to 126M frames, then 0."""
    return 0.01 if env_steps <= BTR_EVAL_EPS_UNTIL else 0.0


def evaluate(
    network: RiseNetwork,
    encoder: Encoder | None,
    env_spec: dict,
    episodes: int,
    epsilon: float = 0.0,
    seed: int = 0,
    num_envs: int | None = None,
    record: str | os.PathLike | None = None,
    max_steps: int | None = None,
    progress: bool = False,
) -> dict:
    """Run ``episodes`` whole episodes with noise off; raw returns, their stats and the human-normalised mean.

    ``num_envs`` defaults to ``min(episodes, 8)``. ``max_steps`` caps the vector steps; episodes still
    running then are counted with their return so far as ``cut`` (and the result is raw only). ``record``:
    write env 0's first episode (RGB frames, or the agent observation if the env has none) to a .gif or
    .mp4. ``progress``: a progress bar over the episodes. The network's train/eval mode is restored
    afterwards. ``positive_share``: the share of episodes with a positive return. See the module docstring
    for the keys that make the score honest (``ends``, ``complete``, ``time_limit``, ``raw_only``, ``score_note``).
    """
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if record is not None and Path(record).suffix.lower() not in VIDEO_SUFFIXES:
        raise ConfigError(f"cannot record to {record}: use a .gif or .mp4 file name")
    num_envs = min(num_envs or min(episodes, 8), episodes)
    env = make_env(env_spec, num_envs=num_envs)
    was_training = network.training
    try:
        network.eval()
        bar = tqdm(total=episodes, unit="episode", desc="evaluation", disable=not progress, leave=False)
        results, steps = _play(network, encoder, env, episodes, epsilon, seed, record, max_steps, bar)
        bar.close()
    finally:
        network.train(was_training)
        env.close()
    returns = np.array([r for r, _, _ in results], dtype=np.float64)
    ends = [e for _, _, e in results]
    normalized, note = score_note(env_spec, returns.tolist(), ends)
    some = returns.size > 0
    return {
        "env": env_spec["id"],
        "episodes": int(returns.size),
        "returns": returns.tolist(),
        "lengths": [n for _, n, _ in results],
        "ends": ends,
        "mean": float(returns.mean()) if some else float("nan"),
        "std": float(returns.std()) if some else float("nan"),
        "min": float(returns.min()) if some else float("nan"),
        "max": float(returns.max()) if some else float("nan"),
        # success on the goal tasks, where only the right answer pays (a +1 cue answer, MiniGrid's object)
        "positive_share": float((returns > 0).mean()) if some else float("nan"),
        "human_normalized": normalized,
        "raw_only": normalized is None,
        "score_note": note,
        "complete": len(ends) - ends.count("cut"),
        "time_limit": ends.count("truncated"),
        "cut": ends.count("cut"),
        "epsilon": float(epsilon),
        "seed": int(seed),
        "steps": int(steps * num_envs),
        "record": str(record) if record is not None else None,
    }


@contextmanager
def own_taus(network: RiseNetwork, generator: torch.Generator) -> Iterator[None]:
    """Inside the block ``network`` samples IQN's taus from ``generator``, not torch's global RNG."""

    def sample_taus(batch: int, n_tau: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.rand(batch, n_tau, generator=generator, device=generator.device).to(device)

    network.sample_taus = sample_taus  # an instance attribute shadows the method for this network only
    try:
        yield
    finally:
        del network.sample_taus


def _play(network, encoder, env, episodes, epsilon, seed, record, max_steps, bar):
    """Play each env's quota of episodes through the rollout driver: ([(return, length, end)], vector steps)."""
    num_envs = env.num_envs
    quota = np.array([episodes // num_envs + (i < episodes % num_envs) for i in range(num_envs)])
    device = next(network.parameters()).device
    rng = np.random.default_rng(seed)
    results: list[tuple[float, int, str]] = []
    frames: list[np.ndarray] | None = [] if record is not None else None
    steps = 0
    rollout = Rollout(env)  # keeps returns and lengths only
    taus = torch.Generator(device=device).manual_seed(seed)
    with own_taus(network, taus), disable_noise(network):
        actor = Actor(network, encoder, num_envs, device)
        step = rollout.reset(seed=seed)
        rollout.file(step)
        finished = np.zeros(num_envs, np.int64)
        while (finished < quota).any():
            if frames is not None:
                frames.append(record_frame(step, 0))
            actor.observe(step)
            rollout.send(actor.act(epsilon, rng, greedy_noise_off=True))
            step = rollout.recv()
            steps += 1
            bar.set_postfix_str(f"{steps}{f'/{max_steps}' if max_steps else ''} steps", refresh=False)
            bar.update(0)  # redraws at most every 0.1 s: long episodes show their steps
            for f in rollout.file(step):
                if finished[f.env_index] < quota[f.env_index]:
                    results.append((f.ret, f.length, "terminated" if f.terminated else "truncated"))
                    finished[f.env_index] += 1
                    bar.update(1)
            ended = step.terminated | step.truncated
            if frames is not None and (ended[0] or len(frames) >= RECORD_MAX_FRAMES):
                frames.append(record_frame(step, 0))  # the episode's last observation
                write_video(record, frames)
                frames = None
            if max_steps is not None and steps >= max_steps:
                cut = [f for f in rollout.cut_running() if finished[f.env_index] < quota[f.env_index]]
                results += [(f.ret, f.length, "cut") for f in cut]
                break
        if frames:  # max_steps ended the run before env 0's first episode did
            write_video(record, frames)
    return results, steps


# ---------------------------------------------------------------------------------------------------
# Loading a trained agent


def load_agent(
    checkpoint_path: str | os.PathLike,
    device: torch.device | str = "cpu",
    encoder_weights: str | os.PathLike | None = None,
    allowed_plugins: tuple[str, ...] = (),
) -> tuple[RiseNetwork, Encoder | None, dict]:
    """(network in eval mode, frozen encoder or None, meta) from a checkpoint (read through its one schema).

    ``meta``: ``env`` (spec dict), ``network_config``, ``encoder`` (record or None), ``path``, and
    ``counters`` when the checkpoint has them. ``encoder_weights`` overrides the recorded weights file
    (it must still have the recorded weights_id); a plug-in encoder loads only if ``allowed_plugins`` names it.
    """
    device = torch.device(device)
    ck = Checkpoint.load(checkpoint_path, device)
    cfg = ck.network_config
    network = make_network(cfg).to(device)
    try:
        network.load_state_dict(ck.network)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {checkpoint_path}: network weights do not fit its config") from e
    network.set_layout(default_channels_last(device), 0, None)
    network.eval()
    encoder = None
    if cfg.context_len > 0:
        if ck.encoder is None:
            raise CheckpointError(f"checkpoint {checkpoint_path} has context_len > 0 but no encoder record")
        where = f"checkpoint {checkpoint_path}"
        encoder = ck.encoder.build(weights=encoder_weights, allowed_plugins=allowed_plugins, where=where)
        encoder = encoder.to(device)
        if encoder.dim != cfg.embed_dim:
            raise CheckpointError(
                f"encoder {encoder.name} gives {encoder.dim}-d embeddings, the network expects {cfg.embed_dim}"
            )
    meta = {
        "env": ck.env,
        "network_config": cfg,
        "encoder": ck.encoder.to_json() if ck.encoder is not None else None,
        "path": str(checkpoint_path),
    }
    if ck.counters is not None:
        meta["counters"] = ck.counters
    return network, encoder, meta
