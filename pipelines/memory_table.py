"""Memory benchmark table: RISE (K > 0) vs plain BTR (K = 0) on memory tasks of the paper's families.

For each task and each K: ``rise-agent train --env TASK --encoder downsample -k K`` online from scratch, then
``rise-agent eval --json``; prints one Markdown row per run (success rate, mean return, wall time) and writes
them to ``<out>/table.md`` and ``<out>/table.json``. Success is the task's own: a positive episode return
(MiniGrid-Memory: reached the matching object; ViZDoom MyWayHome: reached the vest; MiniWorld: reached the goal).

Needs ``pip install -e '.[envs]'``. CPU sizes (the defaults) are small and say so in the table; on a GPU pass
``--env-steps 2000000 --num-envs 64 --network paper`` for a paper-sized run.

Usage: python pipelines/memory_table.py [--tasks MiniGrid-MemoryS7-v0,VizdoomMyWayHome-v1] [--k 40]
       [--env-steps 20000] [--num-envs 8] [--episodes 50] [--out runs/memory_table]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SMALL_NET = ["--impala-channels", "8,16,16", "--hidden", "128", "--lstm-hidden", "128", "--n-cos", "32"]


def _agent(args: list[str]) -> str:
    exe = Path(sys.executable).with_name("rise-agent")
    out = subprocess.run([str(exe), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"rise-agent {args[0]} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
    return out.stdout


def train_args(task: str, k: int, run: Path, a: argparse.Namespace) -> list[str]:
    """The exact ``rise-agent train`` command line of one table row."""
    args = ["train", "--env", task, "--encoder", "downsample", "-k", str(k), "--run-dir", str(run)]
    args += ["--env-steps", str(a.env_steps), "--num-envs", str(a.num_envs), "--seed", str(a.seed)]
    args += ["--replay-ratio", str(a.replay_ratio), "--learning-starts", str(a.learning_starts)]
    args += ["--batch-size", str(a.batch_size), "--eps-decay-steps", str(a.env_steps // 2)]
    args += [
        "--device",
        a.device,
        "--no-progress",
        "--eval-episodes",
        "1",
        "--eval-max-steps",
        "1",
    ]  # the table evaluates after
    return args + ([] if a.network == "paper" else SMALL_NET)


def run_one(task: str, k: int, a: argparse.Namespace) -> dict:
    run = Path(a.out) / f"{task.replace(':', '_').replace('/', '_')}-k{k}"
    cmd = train_args(task, k, run, a)
    t0 = time.perf_counter()
    _agent(cmd + (["--resume"] if (run / "checkpoint.pt").exists() else []))
    train_s = time.perf_counter() - t0
    ev = ["eval", str(run / "checkpoint.pt"), "--episodes", str(a.episodes), "--json", "--seed", "1000"]
    ev += ["--num-envs", str(min(a.episodes, a.num_envs)), "--device", a.device]
    ev += ["--max-steps", str(a.eval_max_steps)] if a.eval_max_steps else []
    result = json.loads(_agent(ev))
    returns = result.get("returns") or []
    return {
        "task": task,
        "k": k,
        "success_rate": sum(r > 0 for r in returns) / max(len(returns), 1),
        "mean_return": result.get("mean"),
        "episodes": len(returns),
        "env_steps": a.env_steps,
        "eval_max_steps": a.eval_max_steps or None,
        "train_wall_s": round(train_s, 1),
        "command": "rise-agent " + " ".join(cmd),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="MiniGrid-MemoryS7-v0,VizdoomMyWayHome-v1")
    p.add_argument("--k", type=int, default=40, help="RISE's context length (compared with K=0)")
    p.add_argument("--env-steps", type=int, default=20_000)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--replay-ratio", type=int, default=8)
    p.add_argument("--learning-starts", type=int, default=2_000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument(
        "--eval-max-steps", type=int, default=0, help="cap evaluation episodes (0: none); cut = failed"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--network", choices=["small", "paper"], default="small")
    p.add_argument("--out", default="runs/memory_table")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = []
    print("| task | K | success | mean return | episodes | env steps | train wall s |")
    print("|---|---|---|---|---|---|---|")
    for task in a.tasks.split(","):
        for k in (a.k, 0):
            r = run_one(task, k, a)
            rows.append(r)
            print(
                f"| {task} | {k} | {r['success_rate']:.0%} | {r['mean_return']:.3f} | {r['episodes']} | "
                f"{r['env_steps']} | {r['train_wall_s']} |",
                flush=True,
            )
            Path(a.out, "table.json").write_text(json.dumps(rows, indent=1))
    lines = [f"| {r['task']} | {r['k']} | {r['success_rate']:.0%} | {r['mean_return']:.3f} |" for r in rows]
    Path(a.out, "table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
