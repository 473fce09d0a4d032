"""learning_curve.png of a run directory, from its CSV files."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_curves"]


def plot_curves(run_dir: Path) -> Path | None:
    """learning_curve.png from the run's CSV files (episode returns, evaluation, loss)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def read(name: str) -> list[dict]:
        path = run_dir / f"{name}.csv"
        if not path.exists():
            return []
        with path.open() as f:
            return list(csv.DictReader(f))

    train_rows, ep_rows, eval_rows = read("train"), read("episodes"), read("eval")
    if not (train_rows or ep_rows or eval_rows):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if ep_rows:
        axes[0].plot(
            [float(r["env_steps"]) for r in ep_rows],
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
        axes[1].plot([float(r["updates"]) for r in train_rows], [float(r["loss"]) for r in train_rows])
        axes[1].set_xlabel("gradient steps")
        axes[1].set_ylabel("loss")
        axes[1].set_yscale("log")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
