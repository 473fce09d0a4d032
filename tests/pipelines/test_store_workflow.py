"""pipelines/store_workflow.py: env steps to 90 % (the two-point rule) from an eval.csv, the commands it builds,
the ratio's bounds, and (slow) the whole chain scratch -> store -> pretrain -> fine-tune on the real CLI at toy size.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def sw():
    sys.path.insert(0, str(ROOT / "pipelines"))  # it imports learning.py by name, as when run as a script
    try:
        return importlib.import_module("store_workflow")
    finally:
        sys.path.remove(str(ROOT / "pipelines"))


def write_eval_csv(run_dir: Path, points: list[tuple[int, float]]) -> None:
    run_dir.mkdir(parents=True)
    with (run_dir / "eval.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "updates", "env_steps", "mean", "positive_share"])
        w.writeheader()
        for i, (x, share) in enumerate(points):
            w.writerow(
                {"step": i, "updates": i, "env_steps": x, "mean": 2 * share - 1, "positive_share": share}
            )


@pytest.mark.parametrize(
    ("shares", "expected"),
    [
        ([0.5, 0.94, 0.6, 0.9, 1.0, 1.0], 2000),  # one lucky point at 1000 does not count; 0.9 itself does
        ([0.2, 0.5, 0.95, 0.97, 0.4, 0.5], 1500),  # held at the next point: reached, even if it drops later
        ([0.5, 0.6, 0.7, 0.8, 0.89, 0.95], None),  # the last point alone cannot be confirmed
        ([0.0] * 6, None),
    ],
)
def test_steps_to_needs_two_points_in_a_row(sw, tmp_path, shares, expected):
    points = [(500 * (i + 1), s) for i, s in enumerate(shares)]
    write_eval_csv(tmp_path / "run", points[::-1])  # read back sorted by env steps
    assert sw.success_curve(tmp_path / "run") == points
    assert sw.steps_to(points) == expected


@pytest.mark.parametrize("seed", range(20))
def test_steps_kept_matches_a_naive_loop(sw, seed):
    rng = random.Random(seed)
    points = [(500 * i, rng.choice([0.5, 0.9, 0.95, 1.0])) for i in range(rng.randint(1, 12))]
    naive = None
    for i in range(len(points) - 1):  # every later point holds, and one later point at least confirms it
        if all(v >= 0.9 for _, v in points[i:]):
            naive = points[i][0]
            break
    assert sw.steps_kept(points) == naive
    assert naive is None or sw.steps_to(points) <= naive


def test_commands_share_the_recipe_and_differ_where_the_workflow_says(sw, tmp_path):
    recipe = sw.curve_recipe([], argparse.ArgumentParser())
    assert recipe.eval_every * recipe.replay_ratio == sw.CURVE_EVERY and recipe.eval_points_episodes == 32
    wf = sw.Workflow()
    out = tmp_path / "runs"
    scratch = sw.train_args(sw.scratch_recipe(recipe, out, 1), recipe.k, 1, tmp_path / "s")
    store, ckpt = sw.store_path(out, recipe.k, 0), out / "pretrain" / "checkpoint.pt"
    tuned = sw.train_args(sw.finetune_recipe(recipe, wf, 0.25, store, ckpt), recipe.k, 1, tmp_path / "f")
    pre = sw.pretrain_args(recipe, store, wf.updates, tmp_path / "p")

    def opt(args: list[str], name: str) -> str | None:
        return args[args.index(name) + 1] if name in args else None

    assert opt(scratch, "--save-store") == str(out / "scratch" / "k24-seed1" / "store")
    assert opt(scratch, "--eps-start") is None and opt(scratch, "--store") is None
    for name in sw.NETWORK_OPTIONS + ("--gamma",):  # one network, one gamma and K in all three
        assert opt(scratch, name) == opt(tuned, name) and opt(pre, name) in (opt(scratch, name), "0")
    assert opt(pre, "--seed") == "0" and opt(pre, "--gamma") == "0.9" and opt(pre, "-k") == "24"
    assert (opt(pre, "--store"), opt(pre, "--updates")) == (str(store), str(wf.updates))
    assert "--env" not in pre and "--online" not in pre
    assert "--online" in tuned and (opt(tuned, "--store"), opt(tuned, "--init-checkpoint")) == (
        str(store),
        str(ckpt),
    )
    assert (opt(tuned, "--offline-fraction"), opt(tuned, "--eps-start")) == ("0.25", str(wf.eps_start))
    assert (opt(tuned, "--learning-starts"), opt(tuned, "--env-steps")) == ("500", "16000")
    assert (opt(scratch, "--learning-starts"), opt(scratch, "--env-steps")) == ("2000", "32000")
    assert tuned.count("--learning-starts") == 1 and opt(tuned, "--save-store") is None
    control = sw.train_args(sw.settings_recipe(recipe, wf), recipe.k, 1, tmp_path / "f")
    assert (
        [a for a in control if a not in tuned] == []
        and "--store" not in control
        and "--online" not in control
    )
    assert [opt(control, n) for n in ("--eps-start", "--learning-starts")] == [str(wf.eps_start), "500"]


def test_ratio_bounds(sw):
    row = {"arm": "finetune", "fraction": 0.5}
    means = {"scratch": (20_000.0, False), sw.arm_name(row): (8_000.0, False)}
    assert sw.ratio_lines(means, "env steps to 90 %")[-1] == "| fine-tune f=0.5 | 8000 | 0.40 | yes |"
    means[sw.arm_name(row)] = (16_000.0, True)  # a fine-tuned run never got there: the ratio is a floor
    assert sw.ratio_lines(means, "env steps to 90 %")[-1] == "| fine-tune f=0.5 | >= 16000 | >= 0.80 | no |"
    means = {"scratch": (32_000.0, True), sw.arm_name(row): (8_000.0, False)}
    assert sw.ratio_lines(means, "env steps to 90 %")[-1] == "| fine-tune f=0.5 | 8000 | <= 0.25 | yes |"


TOY = ["env_steps=128", "num_envs=2", "learning_starts=32", "batch_size=4", "replay_ratio=8", "k=2"]
TOY += ["eval_every=2", "eval_points_episodes=2", "eval_episodes=4", "impala_channels=4,4,4", "hidden=8"]
TOY += ["lstm_hidden=8", "n_cos=8", "screen=12"]


def _run(tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "pipelines" / "store_workflow.py"), "--seeds", "0", "--updates", "6"]
    cmd += ["--fractions", "0.5", "--learning-starts", "16", "--finetune-env-steps", "64", "--solved-at", "0"]
    cmd += ["--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs"), "--set", *TOY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_store_workflow_end_to_end(tmp_path):
    out = _run(tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    store = runs / "scratch" / "k2-seed0" / "store"
    check = subprocess.run(
        [str(Path(sys.executable).with_name("rise-data")), "check", str(store)], capture_output=True
    )
    assert check.returncode == 0, check.stderr[-2000:]
    for path in (
        "pretrain/checkpoint.pt",
        "finetune-f0.5/k2-seed0/checkpoint.pt",
        "finetune-f0.5/k2-seed0/eval.csv",
    ):
        assert (runs / path).stat().st_size > 0
    with (docs / "store-workflow.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["arm"], r["fraction"], r["seed"]) for r in rows] == [
        ("scratch", "", "0"),
        ("finetune", "0.5", "0"),
        ("control", "", "0"),
        ("pretrain", "", ""),
    ]
    assert "positive_share" in (runs / "finetune-f0.5" / "k2-seed0" / "eval.csv").read_text().splitlines()[0]
    assert (docs / "store-workflow.png").stat().st_size > 0
    md = (docs / "store-workflow.md").read_text()
    assert f"--init-checkpoint {runs / 'pretrain' / 'checkpoint.pt'}" in md and f"--store {store}" in md
    # resumable: a rerun trains nothing
    done = runs / "finetune-f0.5" / "k2-seed0" / "result.json"
    before = done.stat().st_mtime_ns
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert done.stat().st_mtime_ns == before and "success" not in again.stdout
