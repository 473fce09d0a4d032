"""The same viewer for a run directory (``rise-agent train --run-dir``): learning curves, the eval table and a
recorded episode. Read from the run's own files (CSV and JSON), so rise_data never imports rise_agent.

A run directory holds ``config.json`` and ``train.csv`` / ``episodes.csv`` / ``eval.csv`` (one row per
logged step, the x axis ``updates`` or ``env_steps``). A recorded episode is the last episode of the store
the run wrote its online episodes to (``save_store``, or ``store`` with ``write_back``), shown by the store
page written into ``store/`` beside the run page.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from rise_data.options import ConfigError
from rise_data.view.analysis import shown_steps

LOGS = {"train": "updates", "episodes": "env_steps", "eval": "updates"}


def is_run_dir(path: str) -> bool:
    """A folder with a run's ``config.json`` and at least one of its metric CSV files (and no store)."""
    p = Path(path)
    if "://" in str(path) or not p.is_dir() or (p / "zarr.json").exists():
        return False
    return (p / "config.json").is_file() and any((p / f"{k}.csv").is_file() for k in LOGS)


def _number(text: str | None) -> float | None:
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_log(path: Path, max_points: int) -> dict:
    """A metric CSV as ``{"rows": n, "columns": {name: [value or None]}}``, at most ``max_points`` rows kept.

    Two streaming passes (count, then keep every k-th row and the last), so memory is bounded by
    ``max_points``, not by the log's length. Columns that are never a number (notes) are kept as text.
    """
    if not path.is_file():
        return {"rows": 0, "columns": {}}
    with path.open(newline="") as f:
        n = sum(1 for _ in csv.DictReader(f))
    keep = set(shown_steps(n, max_points).tolist())
    cols: dict[str, list] = {}
    with path.open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i in keep:
                for k, v in row.items():
                    cols.setdefault(k, []).append(v)
    for k, values in cols.items():
        nums = [_number(v) for v in values]
        if any(x is not None for x in nums):
            cols[k] = nums
    return {"rows": n, "columns": cols}


def recorded_store(run: Path, config: dict) -> str | None:
    """The store the run appended its online episodes to, if it exists (its path as the run saved it)."""
    path = config.get("save_store") or (config.get("store") if config.get("write_back") else None)
    if not path:
        return None
    for candidate in (Path(path), run / path):
        if (candidate / "zarr.json").is_file():
            return str(candidate)
    return None


def run_data(path: str, max_points: int) -> dict:
    """The run page's data: the config and each log (x axis named), downsampled to ``max_points`` rows."""
    run = Path(path)
    try:
        config = json.loads((run / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{run / 'config.json'} cannot be read ({e}); is {run} a run directory?") from None
    logs = {k: {"x": x, **read_log(run / f"{k}.csv", max_points)} for k, x in LOGS.items()}
    return {
        "run": str(run),
        "config": config,
        "logs": logs,
        "checkpoint": (run / "checkpoint.pt").is_file(),
        "recorded": recorded_store(run, config),
    }
