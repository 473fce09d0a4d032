"""Atari recipes with the paper's defaults.

``--from-scratch`` (the RISE paper's main experiment): online from an empty replay, 64 envs, 200M frames,
every finished episode kept with its embeddings as a store (``--save-store``), then evaluation. Without
it, the offline-to-online recipe: collect -> encode -> pretrain -> fine-tune -> evaluate.

BTR's protocol and hyperparameters (BTR paper, Table D6) and RISE's context stream (ImageNet ResNet18
penultimate features, K = 80). Meant for a machine with a GPU; every stage is resumable, so rerunning the
script after an interruption continues where it stopped (collect appends, encode resumes, train --resume).

  python pipelines/atari.py --game Pong --out runs/pong [--from-scratch] [--weights resnet18-f37072fd.pth] [--dry-run]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path


def from_scratch(a: argparse.Namespace) -> list[list[str]]:
    """Online RISE from scratch, resumable: a rerun continues the run (and appends to its store)."""
    out = Path(a.out)
    run = out / "online"
    agent = [sys.executable, "-m", "rise_agent.cli"]
    weights = ["--weights", a.weights] if a.weights else []
    train = [*agent, "train", "--env", f"ALE/{a.game}-v5", "--encoder", a.encoder, *weights, "--run-dir", str(run),
             "--env-steps", str(a.env_steps), "--context-len", str(a.k), "--save-store", str(out / "played.zarr"),
             "--eval-every", "3900", "--seed", str(a.seed)]  # fmt: skip
    if (run / "checkpoint.pt").exists():
        train = [*agent, "train", "--run-dir", str(run), "--resume", *weights]
    evaluate = [
        *agent,
        "eval",
        str(run / "checkpoint.pt"),
        "--episodes",
        "100",
        "--record",
        str(out / "episode.gif"),
    ]
    return [train, evaluate]


def stages(a: argparse.Namespace) -> list[list[str]]:
    out = Path(a.out)
    store = str(out / f"{a.game.lower()}.zarr")
    data = [sys.executable, "-m", "rise_data.cli"]
    agent = [sys.executable, "-m", "rise_agent.cli"]
    weights = ["--weights", a.weights] if a.weights else []
    pre, fine = out / "pretrain", out / "finetune"
    cmds = [
        # 1. data: a behaviour policy (random, or a checkpoint: --policy checkpoint --checkpoint PATH)
        [*data, "collect", f"ALE/{a.game}-v5", store, "--steps", str(a.collect_steps), "--num-envs", str(a.envs),
         "--policy", a.policy, *(["--checkpoint", a.checkpoint] if a.checkpoint else []), "--seed", str(a.seed)],
        # 2. embed every frame once with the frozen encoder
        [*data, "encode", store, "--encoder", a.encoder, *weights],
        [*data, "check", store],
        # 3. offline pretraining (conservative regulariser on by default offline)
        [*agent, "train", "--store", store, "--run-dir", str(pre), "--updates", str(a.pretrain_updates),
         "--context-len", str(a.k), "--seed", str(a.seed)],
        # 4. online fine-tuning, 64 envs, BTR defaults (replay 2^20, 1 update / 64 env steps, lr 1e-4 ...)
        [*agent, "train", "--store", store, "--online", "--run-dir", str(fine), "--env-steps", str(a.env_steps),
         "--num-envs", "64", "--context-len", str(a.k), "--init-checkpoint", str(pre / "checkpoint.pt"),
         "--eval-every", "3900", "--seed", str(a.seed)],
        # 5. evaluation: 100 episodes, ε = 0, noise off, raw + human-normalized (DQN Zoo table)
        [*agent, "eval", str(fine / "checkpoint.pt"), "--episodes", "100", "--record", str(out / "episode.gif")],
    ]  # fmt: skip
    have = _steps(store)
    if have >= a.collect_steps:
        cmds[0] = []
    elif have:  # a rerun tops the store up; a new seed so the appended episodes differ
        i = cmds[0].index("--steps")
        cmds[0][i + 1] = str(a.collect_steps - have)
        cmds[0][-1] = str(a.seed + have)
    if (pre / "checkpoint.pt").exists():
        cmds[3] = [*agent, "train", "--run-dir", str(pre), "--resume"]
    if (fine / "checkpoint.pt").exists():
        cmds[4] = [*agent, "train", "--run-dir", str(fine), "--resume"]
    return [c for c in cmds if c]


def _steps(store: str) -> int:
    from rise_data.store import StoreError, open_store

    try:
        s = open_store(store)
    except StoreError:
        return 0
    return s.rows - s.num_episodes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="Pong")
    p.add_argument("--out", default=None)
    p.add_argument("--collect-steps", type=int, default=1_000_000)
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--policy", default="random")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument(
        "--weights", default=None, help="resnet18 ImageNet state dict, if not in torchvision's cache"
    )
    p.add_argument("--k", type=int, default=80)
    p.add_argument("--pretrain-updates", type=int, default=100_000)
    p.add_argument("--env-steps", type=int, default=50_000_000, help="200M frames at frameskip 4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--from-scratch", action="store_true", help="online from an empty replay (the paper's setting)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    a = p.parse_args()
    a.out = a.out or f"runs/{a.game.lower()}"
    for cmd in from_scratch(a) if a.from_scratch else stages(a):
        print("$ " + shlex.join(cmd), flush=True)
        if not a.dry_run:
            subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
