"""A whole learning run, old against new: the cue recipe's ``rise-agent train`` at a revision and in this tree.

The same command (pipelines/learning.py's cue recipe, K=16, at ``--env-steps``) runs once from a git worktree
of ``--rev`` and once from this tree, both with this venv's Python and ``OMP_NUM_THREADS=1`` as the recipe
runs. Each run's env steps/s is its env steps over the wall time of the whole command (start-up, envs,
learning, its evaluations and the end-of-run one): what a recipe run costs. Runs alternate
(``--repeats`` pairs) so load drift hits both alike; the best of each side is compared.

Ends with one JSON line: ``{"ratios": {"run_speed": new / old}, ...}``.
Usage: python benchmarks/run_speed.py [--rev 3be2990] [--env-steps 4000] [--repeats 1] [--k 16]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipelines"))

from _common import print_ratios  # noqa: E402
from learning import TASKS, train_args  # noqa: E402


def worktree(rev: str) -> Path:
    """A checkout of ``rev`` under /tmp (made once, reused)."""
    path = Path(tempfile.gettempdir()) / f"rise-head-{rev}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True)
    return path


def run_once(code: Path, args: list[str], run_dir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``rise-agent ARGS`` importing rise from ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "from rise_agent.cli import app; app()", *args, "--run-dir", str(run_dir)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"run from {code} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dt, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", default="3be2990")
    p.add_argument("--env-steps", type=int, default=4000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--task", default="cue")
    a = p.parse_args()
    args = train_args(TASKS[a.task], a.k, 0, Path("unused"))[:-2]  # the run dir is given per run
    i = args.index("--env-steps")
    args[i + 1] = str(a.env_steps)
    sides = {"old": worktree(a.rev), "new": ROOT}
    walls: dict[str, list[float]] = {"old": [], "new": []}
    cpus: dict[str, list[float]] = {"old": [], "new": []}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for side, code in sides.items():
                wall, cpu = run_once(code, args, Path(tmp) / f"{side}{r}")
                walls[side].append(round(wall, 2))
                cpus[side].append(round(cpu, 2))
                loads.append(os.getloadavg()[0])
    rate = {side: a.env_steps / min(w) for side, w in walls.items()}
    per_cpu = {side: a.env_steps / min(c) for side, c in cpus.items()}
    print(f"command: rise-agent {' '.join(args)}")
    print(
        f"{'side':<6}{'code':<34}{'best wall s':>12}{'env steps/s':>13}{'best CPU s':>12}{'steps/CPU s':>13}"
    )
    for side, code in sides.items():
        print(
            f"{side:<6}{str(code):<34}{min(walls[side]):>12.1f}{rate[side]:>13.1f}"
            f"{min(cpus[side]):>12.1f}{per_cpu[side]:>13.1f}"
        )
    ratios = {
        "run_speed": round(rate["new"] / rate["old"], 3),
        "run_cpu": round(per_cpu["new"] / per_cpu["old"], 3),
    }
    print_ratios(
        ratios,
        env_steps_per_s={k: round(v, 1) for k, v in rate.items()},
        walls=walls,
        cpu_s=cpus,
        env_steps=a.env_steps,
        rev=a.rev,
        load_1min=[round(x, 2) for x in loads],
    )


if __name__ == "__main__":
    main()
