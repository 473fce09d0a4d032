"""Scores of evaluation results: honest human-normalised scores, one-line summaries, a scores CSV, the IQM.

A human-normalised score is given only when every episode is whole and the env follows the standard Atari
protocol (episodes that reach the protocol's 108k-frame cap are whole games under it, as BTR and DQN Zoo
count them); otherwise the result is raw returns only, with ``raw_only`` set and ``score_note`` saying why.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rise_data.envs import EnvSpec
from rise_data.envs.atari_scores import atari_score_key, iqm_with_ci, protocol_deviations

__all__ = ["SCORE_COLUMNS", "aggregate", "score_note", "summary", "write_scores_csv"]


def score_note(env_spec: dict, returns: list[float], ends: list[str]) -> tuple[float | None, str]:
    """The human-normalised mean of ``returns`` and a one-line note, or (None, why it is raw only).

    ``ends`` holds each episode's end: ``terminated``, ``truncated`` (the env's own time limit) or
    ``cut`` (stopped by ``max_steps``, not a whole episode). Reference scores come from the env's family
    (``EnvSpec.normalize``; the Atari table is registered by :mod:`rise_data.envs.atari_scores`).
    """
    spec = EnvSpec.from_json(env_spec)
    n, cut = len(ends), ends.count("cut")
    if n == 0:
        return None, "raw returns only: no episode finished"
    if cut:
        return None, f"raw returns only: {cut} of {n} episodes were cut by max_steps before they ended"
    normalized = spec.normalize(float(np.mean(returns))).get("human_normalized")
    if normalized is None:
        deviations = protocol_deviations(spec.kwargs) if atari_score_key(spec.id) else []
        if deviations:
            return None, "raw returns only: not the standard Atari protocol (" + "; ".join(deviations) + ")"
        return None, f"raw returns only: no human/random reference scores for {spec.id}"
    capped = ends.count("truncated")
    note = f"human-normalised over {n} whole episodes under the standard Atari protocol"
    if capped:
        note += f" ({capped} reached the 108k-frame cap, counted as the protocol does)"
    return normalized, note


def summary(out: dict) -> str:
    """One line for a person: episodes, raw mean ± std, and the human-normalised score or why there is none."""
    line = f"{out['env']}: {out['episodes']} episodes, return {out['mean']:.2f} ± {out['std']:.2f}"
    if out["human_normalized"] is not None:
        return line + f", human-normalized {out['human_normalized']:.3f}"
    return line + f" ({out['score_note']})"


SCORE_COLUMNS = (
    "checkpoint",
    "env",
    "episodes",
    "mean",
    "std",
    "human_normalized",
    "raw_only",
    "complete",
    "time_limit",
    "cut",
    "epsilon",
    "score_note",
)


def write_scores_csv(path: str | os.PathLike, results: list[dict]) -> Path:
    """One row per :func:`evaluate` result: raw mean, the human-normalised score or empty, ``raw_only``
    and the reason (``score_note``), so a raw-only row cannot be read as a normalised one."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(SCORE_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for out in results:
            w.writerow({k: "" if out.get(k) is None else out.get(k) for k in SCORE_COLUMNS})
    return path


def aggregate(results: list[dict], reps: int = 2000, seed: int = 0) -> dict:
    """IQM of the human-normalised scores of several games' :func:`evaluate` results, with a bootstrap CI.

    Only results with a human-normalised score enter (one run per game: the bootstrap resamples games);
    the others are listed in ``raw_only`` with their ``score_note``. ``iqm`` is None when no result
    has a normalised score. Returns ``{"iqm", "low", "high", "games", "raw_only", ...}``.
    """
    scored = [r for r in results if r.get("human_normalized") is not None]
    raw = {r["env"]: r["score_note"] for r in results if r.get("human_normalized") is None}
    out: dict = {"games": [r["env"] for r in scored], "raw_only": raw}
    if not scored:
        return {**out, "iqm": None, "low": None, "high": None}
    ci = iqm_with_ci([[r["human_normalized"] for r in scored]], reps=reps, seed=seed)
    return {**out, **{k: ci[k] for k in ("iqm", "low", "high", "confidence", "reps", "resampled")}}
