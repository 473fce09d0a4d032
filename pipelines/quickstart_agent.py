"""Quickstart, agent half (called by quickstart.py): pretrain offline on the store, fine-tune online, evaluate.

Sizes are cut down so this finishes in minutes on a CPU; pipelines/atari.py has the paper-sized recipe.
Usage: python pipelines/quickstart_agent.py STORE RUN_DIR
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def sh(*args: str) -> None:
    print("\n$ " + " ".join(args), flush=True)
    subprocess.run(args, check=True)


def main() -> None:
    store, run = sys.argv[1], Path(sys.argv[2])
    agent = [sys.executable, "-m", "rise_agent.cli"]
    small = [
        "--batch-size",
        "16",
        "--context-len",
        "16",
        "--lstm-hidden",
        "64",
        "--impala-channels",
        "16,32,32",
        "--hidden",
        "128",
        "--log-every",
        "5",
        "--eval-episodes",
        "1",
        "--eval-max-steps",
        "200",
    ]
    sh(*agent, "train", "--store", store, "--run-dir", str(run / "pretrain"), "--updates", "30", *small)
    sh(
        *agent,
        "train",
        "--store",
        store,
        "--online",
        "--run-dir",
        str(run / "finetune"),
        "--env-steps",
        "256",
        "--num-envs",
        "4",
        "--learning-starts",
        "0",
        "--replay-ratio",
        "16",
        "--replay-capacity",
        "4096",
        "--eps-start",
        "0.1",
        "--init-checkpoint",
        str(run / "pretrain" / "checkpoint.pt"),
        *small,
    )
    sh(
        *agent,
        "eval",
        str(run / "finetune" / "checkpoint.pt"),
        "--episodes",
        "1",
        "--max-steps",
        "200",
        "--record",
        str(run / "episode.gif"),
    )
    print(f"\nquickstart done: store {store}, runs and learning curves in {run}/", flush=True)


if __name__ == "__main__":
    main()
