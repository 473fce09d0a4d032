"""Atari-57 reference scores, human-normalised scores under the standard protocol, and IQM with a CI.

The table is DeepMind DQN Zoo's ``dqn_zoo/atari_data.py`` (google-deepmind/dqn_zoo, commit 359945dc,
Apache-2.0), copied value for value for all 57 games: undiscounted returns averaged over at least 3
episodes starting after 1-30 no-ops, episodes capped at 108k frames. Human-normalised score =
``(raw - random) / (human - random)``: 0 is the random agent, 1 the professional human tester.

A normalised score only means something for whole episodes played under the protocol the scores are
compared under (:data:`STANDARD_PROTOCOL`, BTR's); :func:`protocol_deviations` says what differs.
Over several games, :func:`iqm_with_ci` gives the interquartile mean with a stratified percentile
bootstrap confidence interval (Agarwal et al. 2021, rliable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from rise_data.envs import ATARI_DEFAULTS, register_scores

__all__ = [
    "ATARI_DATA",
    "ATARI_GAMES",
    "STANDARD_PROTOCOL",
    "atari_reference_scores",
    "atari_score_key",
    "human_normalized",
    "iqm",
    "iqm_with_ci",
    "protocol_deviations",
]

# game: (random, human)
ATARI_DATA: dict[str, tuple[float, float]] = {
    "alien": (227.8, 7127.7),
    "amidar": (5.8, 1719.5),
    "assault": (222.4, 742.0),
    "asterix": (210.0, 8503.3),
    "asteroids": (719.1, 47388.7),
    "atlantis": (12850.0, 29028.1),
    "bank_heist": (14.2, 753.1),
    "battle_zone": (2360.0, 37187.5),
    "beam_rider": (363.9, 16926.5),
    "berzerk": (123.7, 2630.4),
    "bowling": (23.1, 160.7),
    "boxing": (0.1, 12.1),
    "breakout": (1.7, 30.5),
    "centipede": (2090.9, 12017.0),
    "chopper_command": (811.0, 7387.8),
    "crazy_climber": (10780.5, 35829.4),
    "defender": (2874.5, 18688.9),
    "demon_attack": (152.1, 1971.0),
    "double_dunk": (-18.6, -16.4),
    "enduro": (0.0, 860.5),
    "fishing_derby": (-91.7, -38.7),
    "freeway": (0.0, 29.6),
    "frostbite": (65.2, 4334.7),
    "gopher": (257.6, 2412.5),
    "gravitar": (173.0, 3351.4),
    "hero": (1027.0, 30826.4),
    "ice_hockey": (-11.2, 0.9),
    "jamesbond": (29.0, 302.8),
    "kangaroo": (52.0, 3035.0),
    "krull": (1598.0, 2665.5),
    "kung_fu_master": (258.5, 22736.3),
    "montezuma_revenge": (0.0, 4753.3),
    "ms_pacman": (307.3, 6951.6),
    "name_this_game": (2292.3, 8049.0),
    "phoenix": (761.4, 7242.6),
    "pitfall": (-229.4, 6463.7),
    "pong": (-20.7, 14.6),
    "private_eye": (24.9, 69571.3),
    "qbert": (163.9, 13455.0),
    "riverraid": (1338.5, 17118.0),
    "road_runner": (11.5, 7845.0),
    "robotank": (2.2, 11.9),
    "seaquest": (68.4, 42054.7),
    "skiing": (-17098.1, -4336.9),
    "solaris": (1236.3, 12326.7),
    "space_invaders": (148.0, 1668.7),
    "star_gunner": (664.0, 10250.0),
    "surround": (-10.0, 6.5),
    "tennis": (-23.8, -8.3),
    "time_pilot": (3568.0, 5229.2),
    "tutankham": (11.4, 167.6),
    "up_n_down": (533.4, 11693.2),
    "venture": (0.0, 1187.5),
    # DQN Zoo notes that the random score on Video Pinball exceeds the human one under other protocols.
    "video_pinball": (16256.9, 17667.9),
    "wizard_of_wor": (563.5, 4756.5),
    "yars_revenge": (3092.9, 54576.9),
    "zaxxon": (32.5, 9173.3),
}
ATARI_GAMES: tuple[str, ...] = tuple(sorted(ATARI_DATA))

# The Atari settings BTR's reported scores are played under (Machado et al. 2018 sticky actions, plus
# BTR's up-to-30 no-op starts; BTR main.py:17,164, AtariPreprocessingCustom.py:49): whole games (no
# life-loss episodes), raw rewards, the minimal action set, episodes capped at 108k emulator frames.
# Keys are rise_data.envs' Atari kwargs.
STANDARD_PROTOCOL: dict[str, object] = {k: v for k, v in ATARI_DEFAULTS.items() if k != "maxpool"}


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_SQUASHED = {_squash(game): game for game in ATARI_DATA}


def atari_score_key(game_or_env_id: str) -> str | None:
    """The table key of a game: ``ALE/UpNDown-v5``, ``UpNDownNoFrameskip-v4``, ``up_n_down`` -> ``up_n_down``.

    Matching ignores case, ``_`` and the id's decoration, so ale-py's CamelCase env ids and its snake_case
    ROM ids both round-trip (a CamelCase-to-snake rule turns ``UpNDown`` into ``up_ndown``). None if the
    game is not one of the 57.
    """
    name = game_or_env_id.strip()
    name = re.sub(r"^ALE/", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", name)
    return _BY_SQUASHED.get(_squash(name))


def human_normalized(game_or_env_id: str, raw: float) -> float | None:
    """Human-normalised score of ``raw`` on a game (``"ALE/Pong-v5"`` or ``"pong"``); None if not in the table."""
    scores = ATARI_DATA.get(atari_score_key(game_or_env_id) or "")
    if scores is None:
        return None
    random, human = scores
    return (float(raw) - random) / (human - random)


def protocol_deviations(kwargs: Mapping[str, object]) -> list[str]:
    """How an Atari env's settings differ from :data:`STANDARD_PROTOCOL`; ``[]`` when they do not."""
    out = []
    for key, standard in STANDARD_PROTOCOL.items():
        if key not in kwargs:
            out.append(f"{key} not recorded (standard {standard})")
        elif kwargs[key] != standard:
            out.append(f"{key}={kwargs[key]} (standard {standard})")
    return out


def _spec_fields(spec) -> tuple[str, Mapping[str, object]]:
    """(id, kwargs) of an env spec: a JSON dict or an object with ``id`` and ``kwargs``."""
    if isinstance(spec, Mapping):
        return str(spec["id"]), spec.get("kwargs") or {}
    return str(spec.id), spec.kwargs or {}


def atari_reference_scores(spec, raw_return: float) -> dict[str, float]:
    """``{"human_normalized": x}`` for a return played under the standard protocol, else ``{}``.

    The score hook for rise_data's Atari env family (``register_scores("atari", atari_reference_scores)``):
    ``spec`` is an env spec (JSON dict or ``EnvSpec``). Whether the episodes were whole is the caller's
    to check (``rise_agent.evaluation.evaluate.score_note`` does).
    """
    env_id, kwargs = _spec_fields(spec)
    game = atari_score_key(env_id)
    if game is None or protocol_deviations(kwargs):
        return {}
    return {"human_normalized": human_normalized(game, raw_return)}


# ---------------------------------------------------------------------------------------------------
# Aggregates over games


def iqm(scores) -> float:
    """Interquartile mean: the mean after dropping ``n // 4`` lowest and highest values (scipy's
    ``trim_mean(x, 0.25)``, as rliable computes it). Raises on an empty input."""
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("iqm of no scores")
    cut = x.size // 4
    return float(x[cut : x.size - cut].mean())


def _iqm_rows(x: np.ndarray) -> np.ndarray:
    """:func:`iqm` of each row of a 2-D array."""
    x = np.sort(x, axis=1)
    cut = x.shape[1] // 4
    return x[:, cut : x.shape[1] - cut].mean(axis=1)


def iqm_with_ci(
    scores,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    task_bootstrap: bool | None = None,
) -> dict:
    """IQM of ``scores`` (runs, games) with a percentile bootstrap CI, as rliable computes it.

    Each bootstrap replicate resamples, with replacement, the runs of every game independently (the
    stratified bootstrap); with ``task_bootstrap`` it first resamples the games too. ``None`` turns the
    task bootstrap on only when there is a single run per game, where resampling runs alone would give
    an interval of zero width. Returns ``{"iqm", "low", "high", "confidence", "reps", "runs", "games",
    "resampled"}``; a 1-D ``scores`` is one run over its games.
    """
    x = np.asarray(scores, dtype=np.float64)
    x = x[None, :] if x.ndim == 1 else x
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores must be (runs, games) and non-empty, got shape {np.shape(scores)}")
    if not np.isfinite(x).all():
        raise ValueError("scores must be finite (drop games without a human-normalised score first)")
    if reps < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need reps >= 1 and 0 < confidence < 1, got {reps}, {confidence}")
    runs, games = x.shape
    tasks = runs == 1 if task_bootstrap is None else bool(task_bootstrap)
    rng = np.random.default_rng(seed)
    # all game draws first, then all run draws: tests replay this order in a plain loop
    game_idx = (
        rng.integers(0, games, (reps, games)) if tasks else np.broadcast_to(np.arange(games), (reps, games))
    )
    run_idx = rng.integers(0, runs, (reps, runs, games))
    resampled = x[run_idx, game_idx[:, None, :]].reshape(reps, runs * games)
    values = _iqm_rows(resampled)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return {
        "iqm": iqm(x),
        "low": float(low),
        "high": float(high),
        "confidence": float(confidence),
        "reps": int(reps),
        "runs": int(runs),
        "games": int(games),
        "resampled": "runs and games" if tasks else "runs",
    }


register_scores("atari", atari_reference_scores)  # rise_data's Atari family normalizes through this table
