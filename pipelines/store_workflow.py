"""Does a shared store make the next team's training cheaper? Env steps to 90 % success, from scratch vs fine-tuned.

On learning.py's active task ``tmaze-gamma0.9`` (rise/TMaze-v0, gamma 0.9, RISE K=24), all through the real CLI:

1. **From scratch**, one run per seed: the task's recipe plus ``--save-store`` (each run is a team that keeps
   its store), with a denser training-time evaluation curve than learning.py's (``CURVE_EVERY`` env steps,
   ``CURVE_EPISODES`` episodes a point).
2. **The shared store**: that of one solved scratch run (seed 0's, else the first solved seed's).
3. **Offline pretraining** on it (``rise-agent train --store S --updates N``): the recipe's network sizes, gamma
   and K, BTR's offline defaults otherwise (CQL as the CLI defaults it). One checkpoint for every fine-tuning seed.
4. **Online fine-tuning** per seed and offline fraction f: ``--online --store S --offline-fraction f
   --init-checkpoint PRETRAINED --env ...`` with the same sizes and curve, a lower ``--eps-start`` and a shorter
   ``--learning-starts`` than from scratch (a pretrained net needs less exploring and less warm-up). A control
   arm runs those settings online from scratch, without the store or the checkpoint: what the settings alone buy.
5. **Env steps to 90 %** from each run's eval.csv (``env_steps``, ``positive_share``: episodes with a positive
   return, the right answer on the T-maze): the first evaluation point at which the share is at least
   ``THRESHOLD`` and is so at the next point too, so that one lucky draw does not count (``steps_to``). A run
   that never gets there counts as its budget B (reported as "> B": the mean is then a lower bound). Every run's
   checkpoint also gets learning.py's final ``rise-agent eval`` (100 episodes). A run may drop below 90 % again;
   ``steps_kept`` (the first point from which every later one holds) is reported beside it.

Writes ``<docs>/store-workflow.md`` (per-seed tables, means, the ratio fine-tune / scratch against the goal
<= 0.5, the settings and every command), ``<docs>/store-workflow.csv`` and ``<docs>/store-workflow.png``.
Resumable like learning.py: a finished run is skipped, an unfinished one starts again.

Usage: OMP_NUM_THREADS=1 python pipelines/store_workflow.py [--seeds 0 1 2] [--jobs 2] [--updates N]
       [--fractions 0.5 0.25] [--eps-start E] [--learning-starts L] [--finetune-env-steps B]
       [--out runs/store-workflow] [--docs docs]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from learning import (
    TASKS,
    Recipe,
    agent,
    command_line,
    eval_args,
    eval_curve,
    eval_scores,
    mean_curve,
    override_sizes,
    run_one,
    train_afresh,
    train_args,
)

TASK = "tmaze-gamma0.9"
# the scratch arm's budget when docs/store-workflow.md was measured (the task's is now 48k)
SCRATCH_ENV_STEPS = 32_000
THRESHOLD = 0.9  # success share a run must reach (and keep at the next evaluation point)
CURVE_EVERY = 500  # env steps between training-time evaluation points
CURVE_EPISODES = 32  # episodes a point: one lucky point of 16 answered at random is too likely
# the options of a train command that fix the network and the learner: the pretraining shares them
NETWORK_OPTIONS = ("-k", "--seed", "--batch-size", "--impala-channels", "--pool-size", "--hidden")
NETWORK_OPTIONS += ("--lstm-hidden", "--n-cos", "--device")
COLUMNS = ("arm", "fraction", "seed", "steps_to_90", "reached", "steps_kept", "kept", "budget", "success")
COLUMNS += ("time_limit_share",)
COLUMNS += ("wall_s", "load_start", "load_end", "train_command", "eval_command")
MARKER = (
    "<!-- end of the generated part: the text below is kept when store_workflow.py rewrites this file -->"
)


@dataclass(frozen=True)
class Workflow:
    """The fine-tuning team's choices; the network, gamma and K are the task recipe's."""

    updates: int = 3_000  # offline pretraining gradient steps
    fractions: tuple[float, ...] = (0.5, 0.25)  # batch share from the store while fine-tuning
    eps_start: float = 0.1  # a pretrained net needs little exploring
    learning_starts: int = 500  # online transitions before fine-tuning's first update
    env_steps: int = 16_000  # fine-tuning budget: half the scratch budget, the goal's line
    solved_at: float = 0.9  # final success a scratch run needs for its store to be shared


def curve_recipe(overrides: list[str], p: argparse.ArgumentParser) -> Recipe:
    """The task's recipe with the denser evaluation curve (then ``--set`` overrides, e.g. a toy size)."""
    r = replace(TASKS[TASK], env_steps=SCRATCH_ENV_STEPS)
    r = replace(r, eval_every=CURVE_EVERY // r.replay_ratio, eval_points_episodes=CURVE_EPISODES)
    return override_sizes(r, overrides, p)


def run_dir(out: Path, task: str, k: int, seed: int) -> Path:
    """Where learning.run_one puts a run."""
    return out / task / f"k{k}-seed{seed}"


def store_path(out: Path, k: int, seed: int) -> Path:
    return run_dir(out, "scratch", k, seed) / "store"


def scratch_recipe(recipe: Recipe, out: Path, seed: int) -> Recipe:
    return replace(recipe, extra=recipe.extra + ("--save-store", str(store_path(out, recipe.k, seed))))


def finetune_recipe(recipe: Recipe, wf: Workflow, f: float, store: Path, checkpoint: Path) -> Recipe:
    extra = ("--online", "--store", str(store), "--offline-fraction", str(f))
    return settings_recipe(recipe, wf, *extra, "--init-checkpoint", str(checkpoint))


def settings_recipe(recipe: Recipe, wf: Workflow, *store_options: str) -> Recipe:
    """Fine-tuning's budget, warm-up and epsilon; without ``store_options`` the control: no store, no pretraining."""
    extra = (*recipe.extra, *store_options, "--eps-start", str(wf.eps_start))
    return replace(recipe, env_steps=wf.env_steps, learning_starts=wf.learning_starts, extra=extra)


def pretrain_args(recipe: Recipe, store: Path, updates: int, run_dir: Path) -> list[str]:
    """Offline pretraining on ``store`` with the network and learner options of the recipe's own train command."""
    online = train_args(recipe, recipe.k, 0, run_dir)
    picked = [x for i, a in enumerate(online[:-1]) if a in NETWORK_OPTIONS for x in (a, online[i + 1])]
    args = ["train", "--store", str(store), "--updates", str(updates), *picked, *recipe.extra]
    args += ["--eval-episodes", str(recipe.eval_points_episodes), "--checkpoint-every", "1000000"]
    return args + ["--no-progress", "--run-dir", str(run_dir)]


def steps_to(points: list[tuple[int, float]], threshold: float = THRESHOLD) -> int | None:
    """Env steps of the first point whose value and the next point's are both >= ``threshold``; None: never."""
    for (x, v), (_, w) in zip(points, points[1:], strict=False):
        if v >= threshold and w >= threshold:
            return x
    return None


def steps_kept(points: list[tuple[int, float]], threshold: float = THRESHOLD) -> int | None:
    """Env steps of the first point from which every later point is >= ``threshold`` (two points at least)."""
    start = None
    for x, v in points:
        start = None if v < threshold else x if start is None else start
    return start if start is not None and start != points[-1][0] else None


def success_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(env steps, success share) of a run's training-time evaluations, from its eval.csv."""
    return eval_curve(run_dir, "positive_share")


def pretrain(recipe: Recipe, store: Path, updates: int, out: Path) -> dict:
    """One offline pretraining run and the final eval of its checkpoint; skipped if it finished with these commands."""
    run_dir = out / "pretrain"
    targs, eargs = pretrain_args(recipe, store, updates, run_dir), eval_args(recipe, run_dir)
    done, log = run_dir / "result.json", out / "pretrain.log"
    commands = {"train_command": command_line(targs), "eval_command": command_line(eargs)}
    if done.exists():
        row = json.loads(done.read_text())
        if {k: row[k] for k in commands} == commands:
            return row
    trained = train_afresh(targs, run_dir, log)
    scores = eval_scores(json.loads(agent(eargs, log)[0]))
    row = {"arm": "pretrain", "updates": updates, "store": str(store), **trained, **commands}
    row |= {"success": scores["success"], "time_limit_share": scores["time_limit_share"]}
    done.write_text(json.dumps(row, indent=1))
    print(f"pretrain {updates} updates: success {row['success']:.0%}, {row['wall_s']:.0f} s", flush=True)
    return row


def shared_store(scratch: dict, solved_at: float, out: Path, k: int) -> Path:
    """The store of seed 0's scratch run if it solved the task, else the first solved seed's.

    ``scratch`` maps seed -> a future of its row, in seed order: later seeds are waited for only if needed.
    """
    for seed, future in scratch.items():
        if future.result()["success"] >= solved_at:
            return store_path(out, k, seed)
    raise SystemExit(f"no scratch run reached {solved_at:.0%} success: there is no solved store to share")


def arm_row(arm: str, fraction: float | None, row: dict, out: Path, budget: int) -> dict:
    """One run's line of the comparison: env steps to 90 % (its budget if never), final success, wall, load."""
    where = run_dir(out, row["task"], row["K"], row["seed"])
    curve = success_curve(where)
    steps, kept = steps_to(curve), steps_kept(curve)
    keep = ("seed", "success", "time_limit_share", "wall_s", "load_start", "load_end")
    return {
        "arm": arm,
        "fraction": "" if fraction is None else fraction,
        "steps_to_90": budget if steps is None else steps,
        "reached": "no" if steps is None else "yes",
        "steps_kept": budget if kept is None else kept,
        "kept": "no" if kept is None else "yes",
        "budget": budget,
        **{k: row[k] for k in keep},
        "train_command": row["train_command"],
        "eval_command": row["eval_command"],
        "run_dir": str(where),
    }


def arm_means(rows: list[dict], steps: str, reached: str) -> dict[str, tuple[float, bool]]:
    """Per arm: the mean of column ``steps`` and whether it is a lower bound (a run's ``reached`` is "no")."""
    arms: dict[str, list[dict]] = {}
    for r in rows:
        arms.setdefault(arm_name(r), []).append(r)
    return {
        a: (statistics.mean(r[steps] for r in rs), any(r[reached] == "no" for r in rs))
        for a, rs in arms.items()
    }


def arm_name(row: dict) -> str:
    names = {"scratch": "scratch", "control": "no store, fine-tune's eps and warm-up"}
    return names.get(row["arm"]) or f"fine-tune f={row['fraction']}"


def ratio_lines(means: dict[str, tuple[float, bool]], measure: str) -> list[str]:
    """The mean of each arm and each fine-tuning arm's ratio to from scratch, against the goal <= 0.5."""
    scratch, scratch_bound = means["scratch"]
    lines = [f"| arm | mean {measure} | ratio to scratch | goal <= 0.5 |", "|---|---|---|---|"]
    for arm, (mean, bound) in means.items():
        shown = f"{'>= ' if bound else ''}{mean:.0f}"
        if arm == "scratch":
            lines.append(f"| {arm} | {shown} | 1 | |")
            continue
        ratio = mean / scratch
        # a lower bound above (a fine-tuned run never got there) raises the ratio, one below lowers it
        sign = ">= " if bound and not scratch_bound else "<= " if scratch_bound and not bound else ""
        if bound and scratch_bound:
            sign = "~ "
        met = (
            "yes" if ratio <= 0.5 and not bound else "no" if ratio > 0.5 and not scratch_bound else "unknown"
        )
        lines.append(f"| {arm} | {shown} | {sign}{ratio:.2f} | {met} |")
    return lines


def table_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| arm | seed | env steps to 90 % | ... and kept | final success | time-limit share | train wall s "
        "| load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = r["steps_to_90"] if r["reached"] == "yes" else f"> {r['budget']}"
        kept = r["steps_kept"] if r["kept"] == "yes" else f"> {r['budget']}"
        lines.append(
            f"| {arm_name(r)} | {r['seed']} | {steps} | {kept} | {r['success']:.0%} | {r['time_limit_share']:.0%} | "
            f"{r['wall_s']} | {r['load_start']}-{r['load_end']} |"
        )
    return lines


def settings_lines(recipe: Recipe, wf: Workflow, pre: dict, store: Path) -> list[str]:
    spacing, episodes = recipe.eval_every * recipe.replay_ratio, recipe.eval_episodes
    return [
        f"- Task: learning.py's `{TASK}` ({recipe.env}, {' '.join(recipe.extra)}, K={recipe.k}); from scratch "
        f"{recipe.env_steps} env steps, learning starts {recipe.learning_starts}, eps-start 1.0 (the CLI's).",
        f"- Curve: a training-time evaluation every {recipe.eval_every} updates ({spacing} env steps at replay "
        f"ratio {recipe.replay_ratio}), {recipe.eval_points_episodes} episodes each, BTR's evaluation epsilon.",
        f"- Env steps to {THRESHOLD * 100:.0f} %: the first evaluation point whose success share (episodes with a positive "
        "return: the right turn) is at least 90 % and is so at the next point too; a run that never gets there "
        "counts as its budget B and shows as > B (its arm's mean is then a lower bound). A run can drop below "
        '90 % after that; the stricter "kept" measure is the first point from which every later point is at '
        "least 90 %.",
        f"- Shared store: `{store}` (the first seed whose scratch run reached {wf.solved_at * 100:.0f} % final success, "
        "seed 0 first).",
        f"- Offline pretraining: {wf.updates} updates on it, BTR's offline defaults (CQL alpha 1), one checkpoint for "
        f"every fine-tuning seed: {pre['wall_s']} s wall (load {pre['load_start']}-{pre['load_end']}); the "
        f"pretrained net alone scores {pre['success']:.0%} success in the final {episodes}-episode eval "
        f"({pre['time_limit_share']:.0%} on the time limit).",
        f"- Fine-tuning: offline fraction f in {', '.join(map(str, wf.fractions))}, eps-start {wf.eps_start} "
        f"(decaying to 0.01 with the recipe's time constant {recipe.eps_decay_steps}), learning starts "
        f"{wf.learning_starts}, {wf.env_steps} online env steps; its first evaluation point falls after about "
        f"{wf.learning_starts + spacing} env steps, the finest the measure resolves.",
        "- Control (no store): the fine-tuning settings (eps-start, learning starts, budget) online from scratch, "
        "without the store or the pretrained checkpoint.",
        f"- Final success: learning.py's `rise-agent eval` ({episodes} episodes, epsilon 0.01) of each run's "
        "checkpoint.",
    ]


def write_md(rows: list[dict], recipe: Recipe, wf: Workflow, pre: dict, store: Path, path: Path) -> None:
    """The generated report; whatever follows ``MARKER`` in an existing file is kept."""
    kept = path.read_text().partition(MARKER)[2] if path.exists() else "\n"
    lines = ["# The store workflow: does a shared store make the next team's training cheaper?", ""]
    lines += ["Generated by `pipelines/store_workflow.py`.", "", "## Setting", ""]
    lines += settings_lines(recipe, wf, pre, store)
    lines += ["", "## Env steps to 90 % success", ""]
    lines += ratio_lines(arm_means(rows, "steps_to_90", "reached"), "env steps to 90 %") + [""]
    lines += ratio_lines(arm_means(rows, "steps_kept", "kept"), "env steps to 90 % kept to the end")
    lines += ["", "## Per seed", ""] + table_lines(rows)
    lines += ["", "## Curves", "", f"![curves]({path.with_suffix('.png').name})", "", "## Commands", ""]
    lines += [f"- pretrain ({pre['wall_s']} s):", f"  `{pre['train_command']}`", f"  `{pre['eval_command']}`"]
    for r in rows:
        lines += [f"- {arm_name(r)} seed {r['seed']} ({r['wall_s']} s):"]
        lines += [f"  `{r['train_command']}`", f"  `{r['eval_command']}`"]
    path.write_text("\n".join(lines) + "\n\n" + MARKER + kept)


def write_csv(rows: list[dict], pre: dict, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows + [{**pre, "fraction": "", "seed": "", "budget": pre["updates"]}])


def plot(curves: dict[str, list[dict[int, float]]], path: Path) -> None:
    """Success share vs online env steps: each seed thin, the mean over seeds thick, one colour an arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (arm, runs) in enumerate(curves.items()):
        runs = [c for c in runs if c]
        for c in runs:
            ax.plot(list(c), list(c.values()), color=f"C{i}", alpha=0.3, linewidth=1)
        xs, ys = mean_curve(runs)
        ax.plot(xs, ys, color=f"C{i}", linewidth=2.5, label=f"{arm}, mean of {len(runs)} seeds")
    ax.axhline(THRESHOLD, color="gray", linestyle="--", label=f"{THRESHOLD:.0%}")
    ax.set_xlabel("online env steps of the run (not counting the run that made the store)")
    ax.set_ylabel(f"success share ({CURVE_EPISODES} evaluation episodes)")
    ax.set_title(f"{TASK}: from scratch vs fine-tuned from a shared store", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_all(
    recipe: Recipe, wf: Workflow, seeds: list[int], jobs: int, out: Path
) -> tuple[list[dict], dict, Path]:
    """Scratch and control runs, then (as soon as the shared store is known) pretraining, then fine-tuning."""
    k = recipe.k
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        scratch = {
            s: pool.submit(run_one, "scratch", scratch_recipe(recipe, out, s), k, s, out) for s in seeds
        }
        control = {s: pool.submit(run_one, "control", settings_recipe(recipe, wf), k, s, out) for s in seeds}
        store = shared_store(scratch, wf.solved_at, out, k)
        pre = pretrain(recipe, store, wf.updates, out)
        checkpoint = out / "pretrain" / "checkpoint.pt"
        tuned = {
            (f, s): pool.submit(
                run_one, f"finetune-f{f}", finetune_recipe(recipe, wf, f, store, checkpoint), k, s, out
            )
            for f in wf.fractions
            for s in seeds
        }
        rows = [arm_row("scratch", None, scratch[s].result(), out, recipe.env_steps) for s in seeds]
        rows += [arm_row("finetune", f, job.result(), out, wf.env_steps) for (f, _), job in tuned.items()]
        rows += [arm_row("control", None, control[s].result(), out, wf.env_steps) for s in seeds]
    return rows, pre, store


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Workflow()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs at once (each one torch thread)")
    p.add_argument("--updates", type=int, default=d.updates, help="offline pretraining gradient steps")
    p.add_argument(
        "--fractions", type=float, nargs="+", default=list(d.fractions), help="offline fractions f"
    )
    p.add_argument("--eps-start", type=float, default=d.eps_start, help="fine-tuning's initial epsilon")
    p.add_argument("--learning-starts", type=int, default=d.learning_starts, help="fine-tuning's warm-up")
    p.add_argument("--finetune-env-steps", type=int, default=d.env_steps, help="fine-tuning's budget")
    p.add_argument("--solved-at", type=float, default=d.solved_at, help="final success of a shareable store")
    p.add_argument("--out", default="runs/store-workflow")
    p.add_argument("--docs", default="docs")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override recipe sizes")
    a = p.parse_args()
    recipe = curve_recipe(a.set, p)
    wf = Workflow(
        a.updates, tuple(a.fractions), a.eps_start, a.learning_starts, a.finetune_env_steps, a.solved_at
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one torch thread per run: the CPU is shared
    out, docs = Path(a.out), Path(a.docs)
    rows, pre, store = run_all(recipe, wf, a.seeds, a.jobs, out)
    docs.mkdir(parents=True, exist_ok=True)
    write_csv(rows, pre, docs / "store-workflow.csv")
    curves: dict[str, list[dict[int, float]]] = {}
    for r in rows:
        curves.setdefault(arm_name(r), []).append(dict(success_curve(Path(r["run_dir"]))))
    plot(curves, docs / "store-workflow.png")
    write_md(rows, recipe, wf, pre, store, docs / "store-workflow.md")


if __name__ == "__main__":
    main()
