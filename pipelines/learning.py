"""Does it learn? RISE (K > 0) vs plain BTR (K = 0), online from scratch, several seeds, memory tasks and a control.

Every run is the real CLI: ``rise-agent train --env TASK ...`` online from scratch with BTR's default losses
and targets (n = 3, gamma = 0.997, Munchausen, PER alpha 0.2, lr 1e-4, target copy every 500 steps); only
sizes are shrunk for a CPU: network widths, batch, replay ratio, warm-up, epsilon's time constant, K and
the image size. Then ``rise-agent eval --json`` (BTR's evaluation epsilon 0.01) gives success (a positive
episode return: the right answer on the cue tasks, the matching object on MiniGrid-Memory) and mean return.

Writes ``<docs>/results.csv`` (one row per run: task, memory, K, seed, success, mean_return, env_steps,
wall_s, ...), ``<docs>/results.md`` (per-seed table with each row's exact command and wall time, and a
summary per task and K) and one learning-curve PNG per task (``<docs>/results-<task>.png``: the mean over
seeds and each seed of the training-time evaluations). Resumable: a run whose ``result.json`` exists is
skipped, an unfinished one is started again, so rerunning on the final commit only runs what is missing.

Tasks (``TASKS``): ``cue`` rise/CueMemory-v0 (the cue 10 steps back: no memory, no better than chance),
``control`` rise/CueVisible-v0 (the same with the cue drawn on the query frame: no memory needed, RISE must
match K=0), ``tmaze`` rise/TMaze-v0 (the active task: the agent walks a corridor between the cue and the
answer), ``tmaze-control`` rise/TMazeVisible-v0 (the cue also at the junction), the same two with
gamma 0.9 and 48,000 env steps (``tmaze-gamma0.9``, ``tmaze-control-gamma0.9``: BTR's gamma freezes
the greedy policy on this task), ``minigrid`` MiniGrid-MemoryS7-v0 (the agent's partial RGB view),
``mortar-grid`` memory-gym's MortarMayhem-Grid-v0 (``make memory-gym``; success: all 10 commands), and the
paper's two ablations: ``cue-long`` (the cue 21 steps before the question: run it with
``--ks 0 8 16 32 64``; ``tmaze-long`` is its active version, a 20-cell corridor) and ``texture-downsample`` /
``texture-efficientnet`` / ``texture-untrained`` (the gamma 0.9 T-maze with cues of the same brightness that
differ in stripe orientation; the frozen encoder is ``downsample``, ImageNet ``efficientnet-lite0-96``, or the
same network untrained).

Each row records the share of evaluation episodes that ended on the env's time limit; a run where most
did is flagged ``frozen``: its greedy policy stops moving, which no success figure may hide.
``--extra`` passes further train options to every run (a factor screen, written to its own ``--out``
and ``--docs``); the csv is the record: rows of tasks, K or seeds not run this time are kept from it.

Usage: OMP_NUM_THREADS=1 nice -n 5 python pipelines/learning.py [--tasks cue,control,tmaze,...]
       [--seeds 0 1 2] [--ks 24 0] [--jobs 2] [--out runs/learning] [--docs docs] [--extra='--gamma 0.99']
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

COLUMNS = (
    "task",
    "env",
    "memory",
    "K",
    "seed",
    "success",
    "mean_return",
    "env_steps",
    "updates",
    "eval_episodes",
    "time_limit_share",
    "frozen",
    "wall_s",
    "eval_wall_s",
    "load_start",
    "load_end",
    "train_command",
    "eval_command",
)
FROZEN_SHARE = 0.5  # a run whose evaluation episodes mostly end on the time limit has a frozen policy
EVAL_EPSILON = 0.01  # BTR's evaluation epsilon
EVAL_SEED = 1000  # evaluation episodes differ from every training seed's


@dataclass(frozen=True)
class Recipe:
    """One task's sizes: everything here is a size, none is a loss or a target (those stay BTR's defaults)."""

    env: str
    memory: bool  # does an agent without memory stay at chance?
    chance: float  # success of a policy without memory (the K=0 ceiling on memory tasks)
    k: int  # RISE's context length, compared with K = 0 at the same budget
    env_options: str = ""
    screen: int = 16  # agent view side: the CNN only has to see "question or not" (the cue is in the context)
    env_steps: int = 9_000
    num_envs: int = 8
    replay_ratio: int = 2  # env steps per gradient step
    learning_starts: int = 1_000
    batch_size: int = 32
    eps_decay_steps: int = 1_500  # epsilon's exponential time constant (env steps)
    impala_channels: str = "4,8,8"  # the CNN is most of an update's time on a CPU
    pool_size: int = 4
    hidden: int = 64
    lstm_hidden: int = 64
    n_cos: int = 32
    eval_every: int = 250  # gradient steps between training-time evaluations (the curve's points)
    eval_points_episodes: int = 16
    eval_episodes: int = 100  # the final `rise-agent eval`
    eval_max_steps: int = 0  # rise-agent eval --max-steps: steps per eval env in all (0: no cap)
    binary: bool = True  # every episode returns +1 or -1, so success = (1 + return) / 2
    success_above: float = 0.0  # an episode succeeds when its return exceeds this
    encoder: str = "downsample"  # the frozen encoder of the context stream (a registry name)
    encoder_weights: str = ""  # its weights ("untrained": random init); empty: the encoder's default
    extra: tuple[str, ...] = field(default=())  # further train options, e.g. a wrapper


# The active task: cue at the start, 8 corridor cells walked by forward moves, the answer at the junction,
# 64 steps at most; 48x48 RGB frames, a 16x16 agent view. K = 24 covers the cue from the junction when the
# agent dawdles up to 15 steps in the corridor.
TMAZE = Recipe(
    "rise/TMaze-v0",
    True,
    0.5,
    k=24,
    env_steps=16_000,
    replay_ratio=4,
    learning_starts=2_000,
    eps_decay_steps=3_000,
    binary=False,
)
# The same maze with the cue at the junction too: nothing to remember.
TMAZE_CONTROL = replace(TMAZE, env="rise/TMazeVisible-v0", memory=False)
# gamma 0.9 and twice the env steps: with BTR's 0.997 a no-op is worth 0.3 % less than a move, below the
# network's error, and Munchausen's log-policy bonus locks a no-op in (docs/results.md).
GAMMA_09 = {"env_steps": 32_000, "extra": ("--gamma", "0.9")}
# The shipped active task and its control: the gamma 0.9 recipe at 48k env steps. At 32k one seed of three
# on the final code of issue 21 was still switching (44 %; the same seed at 48k: 100 %), so the budget was
# raised once, and the raise judged on seeds 3-5, which no choice had seen (docs/results.md).
ACTIVE = {**GAMMA_09, "env_steps": 48_000}
# The agent's 7x7 partial view as RGB (56x56, 8 px a tile; 21 px keeps 3); MiniGrid's limit: 245 steps.
MINIGRID = Recipe(
    "MiniGrid-MemoryS7-v0",
    True,
    0.5,
    k=24,
    screen=21,
    env_steps=24_000,
    replay_ratio=6,
    learning_starts=2_000,
    eps_decay_steps=4_000,
    eval_every=500,
    binary=False,
)

# The context-length ablation's active version: a corridor of 20 cells, so at the junction the cue is at
# least 20 steps back and K = 8 or 16 cannot hold it; 96 steps at most. The gamma 0.9 recipe.
TMAZE_LONG = replace(TMAZE, k=32, env_options="length=20,max_steps=96", **GAMMA_09)
# The encoder ablation: the two cues are vertical or horizontal stripes of the same brightness, which a 16x16
# gray view cannot tell apart (tests/rise_data/envs/test_tmaze.py); the encoder is the only difference.
TEXTURE = replace(TMAZE, env_options="cue=texture", **GAMMA_09)
# memory-gym's Mortar Mayhem Grid, its defaults: 10 commands shown one by one (an arrow, 3 steps each), then
# carried out in order on a 5x5 arena, 0.1 a command, the episode ends at the first miss. Success is all 10
# (a return of 1.0). The last command is carried out ~120 steps after the first is shown (CleanRL's
# PPO-TrXL benchmark runs it with a 119-step memory window), so K = 128. 84x84 RGB frames; MiniGrid's sizes.
MORTAR_GRID = replace(
    MINIGRID, env="MortarMayhem-Grid-v0", chance=0.0, k=128, env_steps=96_000, success_above=0.95
)

TASKS: dict[str, Recipe] = {
    # The cue 10 steps back; 32x32 RGB frames embedded by the frozen 16x16 `downsample` encoder.
    "cue": Recipe("rise/CueMemory-v0", True, 0.5, k=16, env_options="delay=10,size=32"),
    # The context-length ablation (run with --ks 0 8 16 32 64): the cue 21 steps before the question, so
    # K = 8 or 16 cannot hold it; twice the delay, twice the env steps.
    "cue-long": Recipe(
        "rise/CueMemory-v0", True, 0.5, k=32, env_options="delay=20,size=32", env_steps=18_000
    ),
    # The same task with the cue on the query frame too: nothing to remember.
    "control": Recipe("rise/CueVisible-v0", False, 0.5, k=16, env_options="delay=10,size=32"),
    "tmaze": TMAZE,
    "tmaze-control": TMAZE_CONTROL,
    "tmaze-gamma0.9": replace(TMAZE, **ACTIVE),
    "tmaze-control-gamma0.9": replace(TMAZE_CONTROL, **ACTIVE),
    "minigrid": MINIGRID,
    # MiniGrid-MemoryS7 with the one factor the T-maze screens found (gamma 0.9), at the same env steps.
    "minigrid-gamma0.9": replace(MINIGRID, extra=("--gamma", "0.9")),
    # The same with the encoder ablation's lesson: ImageNet features in the context, not a 16x16 gray view.
    "minigrid-efficientnet": replace(MINIGRID, extra=("--gamma", "0.9"), encoder="efficientnet-lite0-96"),
    "tmaze-long": TMAZE_LONG,
    "mortar-grid": MORTAR_GRID,
    "texture-downsample": TEXTURE,
    "texture-efficientnet": replace(TEXTURE, encoder="efficientnet-lite0-96"),
    "texture-untrained": replace(TEXTURE, encoder="efficientnet-lite0-96", encoder_weights="untrained"),
}


def train_args(recipe: Recipe, k: int, seed: int, run_dir: Path) -> list[str]:
    """The exact ``rise-agent train`` arguments of one run."""
    r = recipe
    args = ["train", "--env", r.env] + (["--env-option", r.env_options] if r.env_options else [])
    args += ["--screen-size", str(r.screen), "--encoder", r.encoder, "-k", str(k), "--seed", str(seed)]
    args += ["--encoder-weights", r.encoder_weights] if r.encoder_weights else []
    args += ["--env-steps", str(r.env_steps), "--num-envs", str(r.num_envs)]
    args += ["--replay-ratio", str(r.replay_ratio), "--learning-starts", str(r.learning_starts)]
    args += ["--batch-size", str(r.batch_size), "--eps-decay-steps", str(r.eps_decay_steps)]
    args += [
        "--impala-channels",
        r.impala_channels,
        "--pool-size",
        str(r.pool_size),
        "--hidden",
        str(r.hidden),
    ]
    args += ["--lstm-hidden", str(r.lstm_hidden), "--n-cos", str(r.n_cos)]
    args += ["--eval-every", str(r.eval_every), "--eval-episodes", str(r.eval_points_episodes)]
    args += ["--checkpoint-every", "1000000", "--device", "cpu", "--no-progress", *r.extra]
    return args + ["--run-dir", str(run_dir)]


def eval_args(recipe: Recipe, run_dir: Path) -> list[str]:
    """The exact ``rise-agent eval`` arguments of one run's final evaluation."""
    args = ["eval", str(run_dir / "checkpoint.pt"), "--episodes", str(recipe.eval_episodes), "--json"]
    args += ["--epsilon", str(EVAL_EPSILON), "--seed", str(EVAL_SEED), "--num-envs", str(recipe.num_envs)]
    args += ["--device", "cpu"]
    return args + (["--max-steps", str(recipe.eval_max_steps)] if recipe.eval_max_steps else [])


def agent(args: list[str], log: Path) -> tuple[str, float]:
    """Run ``rise-agent ARGS`` (stderr appended to ``log``); (stdout, wall seconds). Exits on failure."""
    exe = Path(sys.executable).with_name("rise-agent")
    t0 = time.perf_counter()
    with log.open("a") as err:
        out = subprocess.run([str(exe), *args], stdout=subprocess.PIPE, stderr=err, text=True)
    if out.returncode != 0:
        raise SystemExit(f"rise-agent {args[0]} failed ({out.returncode}); see {log}")
    return out.stdout, time.perf_counter() - t0


def command_line(args: list[str]) -> str:
    return "rise-agent " + " ".join(args)


def finished(task: str, recipe: Recipe, k: int, seed: int, out: Path) -> dict | None:
    """The row of a run that finished with exactly today's commands, else None."""
    run_dir = out / task / f"k{k}-seed{seed}"
    done = run_dir / "result.json"
    if not done.exists():
        return None
    row = json.loads(done.read_text())
    commands = (command_line(train_args(recipe, k, seed, run_dir)), command_line(eval_args(recipe, run_dir)))
    return row if (row["train_command"], row["eval_command"]) == commands else None


def run_one(task: str, recipe: Recipe, k: int, seed: int, out: Path) -> dict:
    """Train and evaluate one (task, K, seed); reuse what already finished with today's commands.

    A finished run is read from its ``result.json``; one whose training matches but whose evaluation
    command changed is only evaluated again; anything else starts again from scratch.
    """
    row = finished(task, recipe, k, seed, out)
    if row is not None:
        return row
    run_dir = out / task / f"k{k}-seed{seed}"
    done, log = run_dir / "result.json", run_dir.parent / f"k{k}-seed{seed}.log"
    targs, eargs = train_args(recipe, k, seed, run_dir), eval_args(recipe, run_dir)
    old = json.loads(done.read_text()) if done.exists() else {}
    if old.get("train_command") == command_line(targs) and (run_dir / "checkpoint.pt").exists():
        trained = {key: old[key] for key in ("wall_s", "load_start", "load_end") if key in old}
    else:
        trained = train_afresh(targs, run_dir, log)
    stdout, eval_wall = agent(eargs, log)
    scores = eval_scores(json.loads(stdout), recipe.success_above)
    row = {
        "task": task,
        "env": recipe.env,
        "memory": "yes" if recipe.memory else "no",
        "K": k,
        "seed": seed,
        "success": scores["success"],
        "mean_return": scores["mean_return"],
        "env_steps": recipe.env_steps,
        "updates": _last_updates(run_dir),
        "eval_episodes": scores["eval_episodes"],
        "time_limit_share": scores["time_limit_share"],
        "frozen": "yes" if scores["time_limit_share"] > FROZEN_SHARE else "no",
        **trained,
        "eval_wall_s": round(eval_wall, 1),
        "train_command": command_line(targs),
        "eval_command": command_line(eargs),
        "recipe": asdict(recipe),
    }
    shutil.rmtree(run_dir / "replay", ignore_errors=True)  # only --resume reads it; it can be large
    done.write_text(json.dumps(row, indent=1))
    print(f"{task} K={k} seed {seed}: success {row['success']:.0%}, train {row['wall_s']:.0f} s", flush=True)
    return row


def train_afresh(args: list[str], run_dir: Path, log: Path) -> dict:
    """Run ``rise-agent ARGS`` in an emptied ``run_dir``; its wall seconds and the load at start and end.

    An interrupted or changed run starts again, so its wall time is one run's; the box is shared, so wall
    times are read with its load.
    """
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    load_start = os.getloadavg()[0]
    _, wall = agent(args, log)
    return {
        "wall_s": round(wall, 1),
        "load_start": round(load_start, 2),
        "load_end": round(os.getloadavg()[0], 2),
    }


def eval_scores(result: dict, success_above: float = 0.0) -> dict:
    """Success (a return above ``success_above``), mean return, episodes and time-limit share of
    ``rise-agent eval --json``."""
    returns = result["returns"]
    return {
        "success": sum(r > success_above for r in returns) / len(returns),
        "mean_return": sum(returns) / len(returns),
        "eval_episodes": len(returns),
        "time_limit_share": result["time_limit"] / result["episodes"],
    }


def _last_updates(run_dir: Path) -> int:
    with (run_dir / "eval.csv").open() as f:
        return max(int(r["updates"]) for r in csv.DictReader(f))


def eval_curve(run_dir: Path, column: str = "mean") -> list[tuple[int, float]]:
    """(env steps, ``column``) of a run's training-time evaluations, from its eval.csv: the mean return, or
    e.g. ``positive_share`` (the share of episodes with a positive return)."""
    path = run_dir / "eval.csv"
    if not path.exists():
        return []
    with path.open() as f:
        points = {int(r["env_steps"]): float(r[column]) for r in csv.DictReader(f)}
    return sorted(points.items())


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def summary_lines(rows: list[dict]) -> list[str]:
    """Per task and K: mean and spread of success over seeds."""
    lines = [
        "| task | memory | K | seeds | success mean | success min-max | mean return | frozen runs "
        "| train wall s (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["K"]), []).append(r)
    for (task, k), rs in groups.items():
        s = [r["success"] for r in rs]
        ret = statistics.mean(r["mean_return"] for r in rs)
        recorded = [r for r in rs if r.get("frozen") in ("yes", "no")]
        frozen = sum(r["frozen"] == "yes" for r in recorded) if recorded else "not recorded"
        lines.append(
            f"| {task} | {rs[0]['memory']} | {k} | {len(rs)} | {statistics.mean(s):.0%} | "
            f"{min(s):.0%}-{max(s):.0%} | {ret:.3f} | {frozen} | "
            f"{statistics.mean(float(r['wall_s']) for r in rs):.0f} |"
        )
    return lines


MARKER = "<!-- end of the generated part: the text below is kept when learning.py rewrites this file -->"


def write_md(rows: list[dict], path: Path, pngs: dict[str, str], note: str) -> None:
    """The generated tables and curves; whatever follows ``MARKER`` in an existing file is kept."""
    kept = path.read_text().partition(MARKER)[2] if path.exists() else "\n"
    lines = ["# Learning results: RISE vs K=0, online from scratch", "", note, "", "## Summary", ""]
    lines += summary_lines(rows)
    lines += [
        "",
        "## Per seed",
        "",
        "| task | memory | K | seed | success | mean return | time-limit share | frozen | env steps | updates "
        "| train wall s | load (1 min) |",
    ]
    lines += ["|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['memory']} | {r['K']} | {r['seed']} | {r['success']:.0%} | "
            f"{r['mean_return']:.3f} | {_share(r)} | {r.get('frozen') or 'not recorded'} | {r['env_steps']} | "
            f"{r['updates']} | {r['wall_s']} | {_load(r)} |"
        )
    lines += ["", "## Curves", ""] + [f"![{t}]({p})" for t, p in pngs.items()]
    lines += ["", "## Commands", "", "Each row's exact train and eval command and their wall times (s).", ""]
    for r in rows:
        lines += [
            f"- {r['task']} K={r['K']} seed {r['seed']} (train {r['wall_s']} s, eval {r['eval_wall_s']} s):"
        ]
        lines += [f"  `{r['train_command']}`", f"  `{r['eval_command']}`"]
    path.write_text("\n".join(lines) + "\n\n" + MARKER + kept)


def _load(row: dict) -> str:
    return (
        f"{row['load_start']}-{row['load_end']}"
        if row.get("load_start") not in (None, "")
        else "not recorded"
    )


def _share(row: dict) -> str:
    share = row.get("time_limit_share")
    return "not recorded" if share in (None, "") else f"{float(share):.0%}"


def read_csv(path: Path) -> list[dict]:
    """The rows of an earlier ``results.csv``, numbers parsed back (empty cells: not recorded)."""
    if not path.exists():
        return []
    numbers = {"K": int, "seed": int, "env_steps": int, "updates": int, "eval_episodes": int}
    numbers |= dict.fromkeys(("success", "mean_return", "wall_s", "eval_wall_s"), float)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update({k: cast(r[k]) for k, cast in numbers.items()})
    return rows


def merged(rows: list[dict], path: Path) -> list[dict]:
    """This invocation's rows, after the earlier csv's rows of any other (task, K, seed)."""
    ran = {(r["task"], r["K"], r["seed"]) for r in rows}
    return [r for r in read_csv(path) if (r["task"], r["K"], r["seed"]) not in ran] + rows


def mean_curve(curves: list[dict[int, float]]) -> tuple[list[int], list[float]]:
    """The mean over seeds at the first curve's env steps, each curve read at its latest point at or before.

    A task whose episode lengths depend on the policy reaches its evaluation points at env steps that differ
    between seeds, so the curves share no x values to average over.
    """
    if not curves:
        return [], []
    start = max(min(c) for c in curves)
    xs = [x for x in sorted(curves[0]) if x >= start]

    def at(curve: dict[int, float], x: int) -> float:
        return curve[max(k for k in curve if k <= x)]

    return xs, [statistics.mean(at(c, x) for c in curves) for x in xs]


def plot_task(task: str, recipe: Recipe, runs: dict[int, dict[int, list]], path: Path) -> Path:
    """Evaluation return vs env steps: the mean over seeds (thick) and each seed (thin), per K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (k, seeds) in enumerate(sorted(runs.items(), reverse=True)):
        color = f"C{i}"
        curves = [dict(c) for c in seeds.values() if c]
        for curve in curves:
            ax.plot(list(curve), list(curve.values()), color=color, alpha=0.3, linewidth=1)
        common, means = mean_curve(curves)
        label = f"RISE K={k}" if k else "K=0 (plain BTR)"
        ax.plot(common, means, color=color, linewidth=2.5, label=f"{label}, mean of {len(seeds)} seeds")
    if recipe.binary:  # a policy without memory answers at chance: return 2 * chance - 1
        ax.axhline(2 * recipe.chance - 1, color="gray", linestyle="--", label="chance")
    ax.set_xlabel("env steps (online, from scratch)")
    ax.set_ylabel(f"evaluation return ({recipe.eval_points_episodes} episodes, eps {EVAL_EPSILON})")
    binary = " (success = (1 + return) / 2)" if recipe.binary else ""
    ax.set_title(f"{task}: {recipe.env}{binary}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(rows: list[dict], out: Path, docs: Path, tasks: dict[str, Recipe], note: str) -> None:
    """results.csv, results.md and one PNG per task under ``docs``."""
    docs.mkdir(parents=True, exist_ok=True)
    rows = merged(rows, docs / "results.csv")
    write_csv(rows, docs / "results.csv")
    pngs = {}
    for task, recipe in tasks.items():
        runs: dict[int, dict[int, list]] = {}
        for r in rows:
            if r["task"] == task:
                runs.setdefault(r["K"], {})[r["seed"]] = eval_curve(out / task / f"k{r['K']}-seed{r['seed']}")
        if runs:
            pngs[task] = plot_task(task, recipe, runs, docs / f"results-{task}.png").name
    for task in dict.fromkeys(r["task"] for r in rows):  # tasks not run this time keep their curve
        if task not in pngs and (docs / f"results-{task}.png").exists():
            pngs[task] = f"results-{task}.png"
    write_md(rows, docs / "results.md", pngs, note)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="cue,control,minigrid", help=f"comma-separated of {sorted(TASKS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ks", type=int, nargs="+", help="context lengths to run (default: each task's K and 0)")
    p.add_argument(
        "--extra",
        default="",
        help="further rise-agent train options for every run, e.g. --extra='--gamma 0.99'",
    )
    p.add_argument("--jobs", type=int, default=2, help="runs at once (each one torch thread)")
    p.add_argument("--out", default="runs/learning")
    p.add_argument("--docs", default="docs")
    p.add_argument(
        "--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override recipe sizes (all tasks)"
    )
    p.add_argument("--report-only", action="store_true", help="write the report of the finished runs only")
    a = p.parse_args()
    unknown = [t for t in a.tasks.split(",") if t not in TASKS]
    if unknown:
        p.error(f"unknown task {unknown[0]!r}; known: {', '.join(TASKS)}")
    tasks = {t: override_sizes(TASKS[t], a.set, p) for t in a.tasks.split(",")}
    tasks = {t: replace(r, extra=r.extra + tuple(shlex.split(a.extra))) for t, r in tasks.items()}
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one torch thread per run: the CPU is shared
    jobs = [(t, r, k, s) for t, r in tasks.items() for s in a.seeds for k in (a.ks or (r.k, 0))]
    out = Path(a.out)
    if a.report_only:
        rows = [row for row in (finished(*j, out) for j in jobs) if row is not None]
    else:
        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            rows = list(pool.map(lambda j: run_one(*j, out), jobs))
    note = f"Machine: {os.cpu_count()} CPU cores; each run's 1-minute load is in the per-seed table."
    report(rows, out, Path(a.docs), tasks, note)


def override_sizes(recipe: Recipe, items: list[str], p: argparse.ArgumentParser) -> Recipe:
    """``recipe`` with each ``FIELD=VALUE`` of ``--set`` applied; anything but a size is a usage error."""
    changes = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in Recipe.__dataclass_fields__ or name in ("env", "memory", "extra", "encoder"):
            p.error(f"--set {item}: not a recipe size; sizes are {', '.join(Recipe.__dataclass_fields__)}")
        changes[name] = type(getattr(recipe, name))(value)
    return replace(recipe, **changes)


if __name__ == "__main__":
    main()
