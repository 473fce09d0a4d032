"""Training: offline pretraining from a store, or online fine-tuning in vectorized envs.

One frozen :class:`TrainConfig` (printed at start, saved as ``config.json`` in the run directory). The
replay reads the store through a memory-mapped frame cache and holds the stored embeddings on the device;
online, each new frame is embedded once by the store's own frozen encoder (provenance checked) and appended.
Checkpoints are written atomically; ``resume`` continues a killed run with the same counters and RNG.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rise_agent.actor import Actor, epsilon_schedule
from rise_agent.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from rise_agent.learner import Learner, LearnerConfig
from rise_agent.network import NetworkConfig
from rise_agent.replay import Replay, ReplayConfig
from rise_data.encode import resolve_device
from rise_data.envs import env_spec, make_env
from rise_data.store import open_store


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run does; BTR's defaults (BTR paper, Table D6) unless noted."""

    run_dir: str
    store: str | None = None
    embedding: str | None = None  # embeddings array in the store; default: the only complete one
    online: bool = False
    env: str | None = None  # online env id; default: rebuilt from the store's attributes
    num_envs: int = 64
    env_steps: int = 0  # online: total env steps (across envs)
    updates: int = 0  # offline: gradient steps
    replay_ratio: int = 64  # env steps per gradient step (BTR: one per 64-env vector step)
    learning_starts: int = 200_000  # replay transitions (offline + online) before learning starts online
    eps_start: float = 1.0
    eps_end: float = 0.01
    eps_decay_steps: int = 2_000_000  # env steps (8M frames)
    eps_disable_after: int | None = 25_000_000  # BTR turns ε-greedy off at 100M frames
    batch_size: int = 256
    cql_alpha: float | None = None  # None: 1.0 offline, 0.0 online
    write_back: bool = False  # online: append the played episodes (and their embeddings) to the store
    init_checkpoint: str | None = None  # start from a trained network (e.g. offline pretraining)
    encoder_weights: str | None = None  # weights file of the store's encoder, if not where encode found it
    checkpoint_every: int = 5_000  # gradient steps
    log_every: int = 100  # gradient steps
    eval_every: int = 0  # gradient steps; 0 = only at the end
    eval_episodes: int = 8
    eval_max_steps: int | None = None  # cap evaluation episodes (vector steps); None: play them out
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    network: NetworkConfig = field(default_factory=lambda: NetworkConfig(n_actions=1))
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)


def _pick_embedding(store, name: str | None, k: int) -> str | None:
    if k == 0:
        return None
    if name:
        return name
    done = [n for n in store.embedding_names() if int(store.embedding_meta(n)["rows_done"]) == store.rows]
    if len(done) != 1:
        raise ValueError(
            f"{store.path} has complete embeddings {done or 'none'}; pass --embedding NAME"
            + ("" if done else f" after: rise-data encode {store.path} --encoder resnet18")
        )
    return done[0]


def _encoder_record(store, name: str | None, weights_override: str | None) -> dict | None:
    """What rebuilds the store's frozen encoder for new frames: registry name, weights source, identity."""
    if name is None:
        return None
    meta = store.embedding_meta(name)
    weights = weights_override or meta.get("config", {}).get("weights")
    return {
        "name": meta["encoder"],
        "weights": weights,
        "weights_id": meta["weights_id"],
        "source": meta["preprocessing"]["source"],
        "dim": meta["dim"],
        "embedding": name,
    }


class _Logger:
    """CSV files + TensorBoard, one row per event kind."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self.tb = SummaryWriter(str(run_dir / "tb"))
        self.files: dict[str, tuple] = {}

    def log(self, kind: str, step: int, row: dict) -> None:
        row = {"step": step, "time": round(time.time(), 3), **row}
        if kind not in self.files:
            path = self.run_dir / f"{kind}.csv"
            new = not path.exists()
            f = path.open("a", newline="")
            w = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
            if new:
                w.writeheader()
            self.files[kind] = (f, w)
        f, w = self.files[kind]
        w.writerow(row)
        f.flush()
        for k, v in row.items():
            if k not in ("step", "time") and isinstance(v, int | float) and math.isfinite(v):
                self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        for f, _ in self.files.values():
            f.close()
        self.tb.close()


def _config_json(config: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(config), indent=2, default=str)


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Run (or resume) training; returns the final counters and evaluation."""
    from rise_agent.evaluate import evaluate, rebuild_encoder

    run_dir = Path(config.run_dir)
    ckpt_path = run_dir / "checkpoint.pt"
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise ValueError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose a new --run-dir"
        )
    if resume and not ckpt_path.exists():
        raise ValueError(f"{run_dir} has no checkpoint.pt to resume; start it without --resume")
    if config.online and config.env_steps <= 0:
        raise ValueError("online training needs --env-steps N")
    if not config.online and (config.updates <= 0 or config.store is None):
        raise ValueError("offline training needs --store STORE and --updates N")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(_config_json(config))
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    store = open_store(config.store) if config.store else None
    spec = store.env if store is not None else env_spec(config.env)
    if config.env and store is not None and config.env != spec["id"]:
        raise ValueError(f"--env {config.env} differs from the store's env {spec['id']}")
    k = config.network.context_len
    emb_name = _pick_embedding(store, config.embedding, k) if store is not None else None
    enc_record = _encoder_record(store, emb_name, config.encoder_weights) if store is not None else None
    if k > 0 and enc_record is None:
        raise ValueError(
            "context_len > 0 needs a store with embeddings (the frozen encoder is taken from it)"
        )
    net_cfg = dataclasses.replace(
        config.network,
        n_actions=int(spec["n_actions"]),
        embed_dim=int(enc_record["dim"]) if enc_record else config.network.embed_dim,
        context_len=k,
        frame_hw=tuple(spec["obs_shape"]),  # the env's agent view (84x84 on Atari)
    )
    cql = config.cql_alpha if config.cql_alpha is not None else (0.0 if config.online else 1.0)
    learner = Learner(net_cfg, dataclasses.replace(config.learner, cql_alpha=cql), device)
    num_envs = config.num_envs if config.online else 0
    replay_cfg = dataclasses.replace(config.replay, context_len=k)
    if store is not None:
        replay = Replay.from_store(store.path, emb_name, replay_cfg, num_envs=num_envs, device=device)
    else:
        replay = Replay(
            replay_cfg,
            obs_shape=tuple(spec["obs_shape"]),
            embed_dim=net_cfg.embed_dim,
            num_envs=num_envs,
            device=device,
        )

    counters = {"updates": 0, "env_steps": 0, "episodes": 0}
    if config.init_checkpoint and not resume:
        init = load_checkpoint(config.init_checkpoint, device)
        learner.online.load_state_dict(init["network"])
        learner.target.load_state_dict(init["network"])
    if resume:
        ck = load_checkpoint(ckpt_path, device)
        learner.load_state_dict(ck["learner"])
        counters = json.loads(ck["counters"])
        rng = restore_rng(ck["rng"])

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                "network": learner.online.state_dict(),
                "learner": learner.state_dict(),
                "network_config": json.dumps(dataclasses.asdict(net_cfg)),
                "encoder": json.dumps(enc_record),
                "env": json.dumps(spec),
                "train_config": _config_json(config),
                "counters": json.dumps(counters),
                "rng": capture_rng(rng),
            },
        )

    print(f"TrainConfig: {_config_json(config)}", flush=True)
    logger = _Logger(run_dir)
    t0 = time.time() - counters.get("wall", 0.0)
    last_ckpt = counters["updates"]

    def learn(n: int) -> None:
        for _ in range(n):
            batch = replay.sample(config.batch_size, rng)
            metrics, prio = learner.step(batch)
            replay.update_priorities(batch.index, prio)
            counters["updates"] += 1
            if counters["updates"] % config.log_every == 0:
                logger.log(
                    "train",
                    counters["updates"],
                    {"env_steps": counters["env_steps"], "wall": time.time() - t0, **metrics},
                )

    def maybe_checkpoint() -> None:
        nonlocal last_ckpt
        if counters["updates"] - last_ckpt >= config.checkpoint_every:
            counters["wall"] = time.time() - t0
            checkpoint()
            last_ckpt = counters["updates"]

    encoders: dict = {}

    def frozen_encoder():
        """The store's frozen encoder, built once (refused if its weights differ from the embeddings')."""
        if enc_record is not None and "enc" not in encoders:
            encoders["enc"] = rebuild_encoder(enc_record, device, config.encoder_weights)
        return encoders.get("enc")

    def run_eval() -> dict:
        encoder = frozen_encoder()
        out = evaluate(
            learner.online,
            encoder,
            spec,
            episodes=config.eval_episodes,
            seed=config.seed + 10_000,
            max_steps=config.eval_max_steps,
        )
        row = {k: v for k, v in out.items() if isinstance(v, int | float)}
        logger.log(
            "eval", counters["updates"], {"env_steps": counters["env_steps"], "wall": time.time() - t0, **row}
        )
        return out

    evaluation: dict = {}
    writeback = None
    try:
        if not config.online:
            bar = tqdm(
                total=config.updates,
                initial=counters["updates"],
                unit="update",
                disable=not config.progress,
                desc="offline",
            )
            while counters["updates"] < config.updates:
                n = min(config.log_every, config.updates - counters["updates"])
                learn(n)
                bar.update(n)
                maybe_checkpoint()
                if config.eval_every and counters["updates"] % config.eval_every == 0:
                    run_eval()
            bar.close()
        else:
            encoder = frozen_encoder()
            env = make_env(spec, num_envs=config.num_envs)
            actor = Actor(
                learner.online,
                encoder,
                config.num_envs,
                frame_stack=config.replay.frame_stack,
                context_len=k,
                device=device,
            )
            step = env.reset(seed=config.seed + counters["env_steps"])
            emb = actor.observe(step)
            replay.add_first(step.obs, emb)
            if config.write_back:
                if store is None:
                    raise ValueError("--write-back needs --store (the store the episodes are appended to)")
                from rise_agent.writeback import StoreWriteBack

                writeback = StoreWriteBack(
                    store.path, emb_name, config.num_envs, json.loads(_config_json(config))
                )
                writeback.first(step, emb)
            returns = np.zeros(config.num_envs)
            lengths = np.zeros(config.num_envs, int)
            owed = 0.0
            bar = tqdm(
                total=config.env_steps,
                initial=counters["env_steps"],
                unit="step",
                disable=not config.progress,
                desc="online",
            )
            while counters["env_steps"] < config.env_steps:
                eps = epsilon_schedule(
                    counters["env_steps"],
                    config.eps_start,
                    config.eps_end,
                    config.eps_decay_steps,
                    config.eps_disable_after,
                )
                actions = actor.act(eps, rng)
                step = env.step(actions)
                emb = actor.observe(step)
                replay.add(actions, step, emb)
                if writeback is not None:
                    writeback.add(actions, step, emb)
                counters["env_steps"] += config.num_envs
                bar.update(config.num_envs)
                live = ~step.is_first
                returns[live] += step.reward[live]
                lengths[live] += 1
                for i in np.flatnonzero(step.terminated | step.truncated):
                    counters["episodes"] += 1
                    logger.log(
                        "episodes",
                        counters["env_steps"],
                        {
                            "return": float(returns[i]),
                            "length": int(lengths[i]),
                            "epsilon": eps,
                            "wall": time.time() - t0,
                        },
                    )
                    returns[i], lengths[i] = 0.0, 0
                if len(replay) >= max(config.learning_starts, config.batch_size):
                    owed += config.num_envs / config.replay_ratio
                    n = int(owed)
                    owed -= n
                    if n:
                        learn(n)
                        maybe_checkpoint()
                        if config.eval_every and counters["updates"] % config.eval_every < n:
                            run_eval()
            bar.close()
            env.close()
        evaluation = run_eval()
    except KeyboardInterrupt:
        print("interrupted: writing a checkpoint; continue with --resume", flush=True)
    finally:
        if writeback is not None:
            writeback.close()
        counters["wall"] = time.time() - t0
        checkpoint()
        logger.close()
    plot_curves(run_dir)
    return {**counters, "eval": evaluation, "run_dir": str(run_dir)}


def plot_curves(run_dir: Path) -> Path | None:
    """learning_curve.png from the run's CSV files (episode returns, evaluation, loss)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def read(name: str) -> list[dict]:
        path = run_dir / f"{name}.csv"
        return list(csv.DictReader(path.open())) if path.exists() else []

    train_rows, ep_rows, eval_rows = read("train"), read("episodes"), read("eval")
    if not (train_rows or ep_rows or eval_rows):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if ep_rows:
        axes[0].plot(
            [float(r["step"]) for r in ep_rows],
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
        axes[1].plot([float(r["step"]) for r in train_rows], [float(r["loss"]) for r in train_rows])
        axes[1].set_xlabel("gradient steps")
        axes[1].set_ylabel("loss")
        axes[1].set_yscale("log")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
