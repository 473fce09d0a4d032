"""A run directory: config, checkpoint, metrics (CSV + TensorBoard), curves and the online replay's files.

A run *exists* once its first checkpoint is written. A start that fails earlier (bad store, corrupt
chunk, a kill) leaves files that do not block the next start: ``start`` clears rise's own files of an
unfinished start. ``--resume`` needs a checkpoint and may point at a copy of the directory: everything
is written where the command says, never where the saved config was first run. After a resume, metric
rows written past the checkpoint are dropped, so curves have no repeated steps.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from rise_agent.config import TrainConfig, load_config, save_config
from rise_agent.training.checkpoint import Checkpoint
from rise_data.errors import UserError

__all__ = ["RunDir", "RunError"]

_OWN = ("config.json", "train.csv", "episodes.csv", "eval.csv", "learning_curve.png", "tb", "replay")
_LOGS = ("train", "episodes", "eval")


class RunError(UserError):
    """The run directory cannot be used as asked; the message says what to do instead."""


class RunDir:
    """The files of one training run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoint = self.path / "checkpoint.pt"
        self.config_file = self.path / "config.json"
        self.replay_dir = self.path / "replay"

    @property
    def exists(self) -> bool:
        return self.checkpoint.is_file()

    def prepare(self) -> None:
        """Make way for a fresh run (refused when a run with a checkpoint is here); creates nothing."""
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"--run-dir {self.path} is a file; choose a directory")
        if self.exists:
            raise RunError(
                f"{self.path} already holds a run; pass --resume to continue it or choose a new --run-dir"
            )
        self.discard()

    def discard(self) -> None:
        """Remove rise's own files of a start that did not reach its first checkpoint (and the folder if empty)."""
        for name in _OWN:
            p = self.path / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        self._remove_temps()
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def start(self, config: TrainConfig) -> None:
        """Write the config of a fresh run (after :meth:`prepare`)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(
                f"cannot create --run-dir {self.path}: {e.strerror}; choose a writable folder"
            ) from e
        save_config(config, self.config_file)

    def saved_config(self) -> TrainConfig:
        """The config the run was started with (strictly loaded)."""
        if not self.exists:
            hint = " (its start failed before the first checkpoint; start it again without --resume)"
            raise RunError(
                f"{self.path} has no checkpoint.pt to resume{hint if self.config_file.exists() else ''}"
            )
        try:
            tree = json.loads(self.config_file.read_text())
        except (OSError, ValueError) as e:
            raise RunError(f"cannot read {self.config_file}: {e}") from e
        return load_config(tree, where=str(self.config_file))

    def resume(self, config: TrainConfig) -> None:
        """Record the (possibly raised) targets of a resumed run."""
        self._remove_temps()
        save_config(config, self.config_file)

    def save(self, ck: Checkpoint) -> None:
        ck.save(self.checkpoint)

    def load(self, device) -> Checkpoint:
        return Checkpoint.load(self.checkpoint, device)

    def _remove_temps(self) -> None:
        if self.path.is_dir():
            for tmp in self.path.glob("*.tmp"):
                tmp.unlink(missing_ok=True)

    def logger(self, resume: Any = None) -> Logger:
        """Metric writers; after a resume, rows past the checkpoint's counters (redone now) are dropped."""
        if resume is not None:
            for kind in _LOGS:
                _truncate_csv(self.path / f"{kind}.csv", resume)
        return Logger(self.path, resume)


def _truncate_csv(path: Path, counters: Any) -> None:
    """Keep the rows whose ``updates``/``env_steps`` do not pass the checkpoint's."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    cols = [(header.index(k), getattr(counters, k)) for k in ("updates", "env_steps") if k in header]
    keep = [r for r in body if len(r) == len(header) and all(float(r[i]) <= limit for i, limit in cols)]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows([header, *keep])
    tmp.replace(path)


class Logger:
    """CSV files + TensorBoard (``tb/<kind>``), one per event kind.

    ``step`` is the kind's x axis (gradient steps for train/eval, env steps for episodes); every row
    also carries both counters so a resume can drop what the checkpoint does not cover. ``counters``
    is the session's :class:`~rise_agent.training.session.Counters` (read by attribute).
    """

    STEP = {"train": "updates", "eval": "updates", "episodes": "env_steps"}

    def __init__(self, run_dir: Path, resume: Any = None):
        self.run_dir = run_dir
        self.resume = resume
        self.files: dict[str, tuple] = {}
        self.tb: dict = {}

    def _writer(self, kind: str):
        from torch.utils.tensorboard import SummaryWriter

        if kind not in self.tb:
            purge = None if self.resume is None else getattr(self.resume, self.STEP.get(kind, "updates")) + 1
            self.tb[kind] = SummaryWriter(str(self.run_dir / "tb" / kind), purge_step=purge)
        return self.tb[kind]

    def log(self, kind: str, counters: Any, row: dict) -> None:
        step = int(getattr(counters, self.STEP.get(kind, "updates")))
        row = {
            "step": step,
            "updates": counters.updates,
            "env_steps": counters.env_steps,
            "time": round(time.time(), 3),
            **row,
        }
        if kind not in self.files or set(row) - set(self.files[kind][1].fieldnames):
            self._open(kind, row)
        f, w = self.files[kind]
        w.writerow(row)
        f.flush()
        tb = self._writer(kind)
        for k, v in row.items():
            if (
                k not in ("step", "time", "updates", "env_steps")
                and isinstance(v, int | float)
                and math.isfinite(v)
            ):
                tb.add_scalar(k, v, step)

    def _open(self, kind: str, row: dict) -> None:
        """(Re)open ``kind``.csv for appending with columns for every key of ``row``.

        The columns are the file's header plus any new key: a metric that appears later (or after a
        resume, from a newer learner) widens the file, earlier rows left empty in it, instead of being dropped.
        """
        if kind in self.files:
            self.files.pop(kind)[0].close()
        path = self.run_dir / f"{kind}.csv"
        rows: list[dict] = []
        if path.exists() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                header, rows = list(reader.fieldnames or []), list(reader)
        else:
            header = []
        names = header + [k for k in row if k not in header]
        if names != header:  # a new file, or new columns: write the header (and the rows so far) afresh
            tmp = path.with_name(path.name + ".tmp")
            with tmp.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=names, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
            tmp.replace(path)
        f = path.open("a", newline="")
        self.files[kind] = (f, csv.DictWriter(f, fieldnames=names, extrasaction="ignore"))

    def close(self) -> None:
        for f, _ in self.files.values():
            f.close()
        for tb in self.tb.values():
            tb.close()
        self.files, self.tb = {}, {}
