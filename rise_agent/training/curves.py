"""learning_curve.png of a run directory, from its CSV files.

Panels: returns (training episodes and evaluations) against env steps, the loss against gradient steps,
and, when the learner reports them (K > 0), the failure signatures of the context stream: the gate's
mean and saturation, and the LSTM output's mean and spread (a gate stuck at 0 or 1 or a collapsed LSTM
shows here long before the returns do).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

__all__ = ["SIGNATURES", "plot_curves", "signatures"]

# metric keys of the context stream's failure signatures, as the learner names them
SIGNATURES = ("gate_mean", "gate_saturation", "gate_sat", "lstm_mean", "lstm_std")


def _read(run_dir: Path, name: str) -> list[dict]:
    path = run_dir / f"{name}.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _number(text: str | None) -> float:
    if text is None:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def signatures(train_rows: list[dict]) -> list[str]:
    """The failure-signature columns of ``train_rows`` that hold at least one finite value."""
    present = train_rows[0].keys() if train_rows else ()
    return [k for k in SIGNATURES if k in present and any(math.isfinite(_number(r[k])) for r in train_rows)]


def _returns(ax, ep_rows: list[dict], eval_rows: list[dict]) -> None:
    if ep_rows:
        steps = [_number(r["env_steps"]) for r in ep_rows]
        ax.plot(steps, [_number(r["return"]) for r in ep_rows], ".", alpha=0.4, label="training episodes")
    if eval_rows:
        steps = [_number(r["env_steps"]) for r in eval_rows]
        ax.plot(steps, [_number(r["mean"]) for r in eval_rows], "o-", label="evaluation (mean)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    if ep_rows or eval_rows:
        ax.legend()


def _by_update(ax, rows: list[dict], keys: list[str], ylabel: str) -> None:
    updates = [_number(r["updates"]) for r in rows]
    for k in keys:
        ax.plot(updates, [_number(r[k]) for r in rows], label=k)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(ylabel)


def plot_curves(run_dir: Path) -> Path | None:
    """learning_curve.png from the run's CSV files (None when there is nothing to plot yet)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_rows, ep_rows, eval_rows = (_read(run_dir, k) for k in ("train", "episodes", "eval"))
    if not (train_rows or ep_rows or eval_rows):
        return None
    sig = signatures(train_rows)
    fig, axes = plt.subplots(1, 3 if sig else 2, figsize=(16 if sig else 11, 4))
    _returns(axes[0], ep_rows, eval_rows)
    if train_rows:
        _by_update(axes[1], train_rows, ["loss"], "loss")
        axes[1].set_yscale("log")
    if sig:
        _by_update(axes[2], train_rows, sig, "context stream")
        axes[2].legend()
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
