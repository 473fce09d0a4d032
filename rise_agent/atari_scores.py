"""Random and human reference scores of the Atari-57 games, and human-normalised scores.

The table is DeepMind DQN Zoo's ``dqn_zoo/atari_data.py`` (google-deepmind/dqn_zoo, commit 359945dc,
Apache-2.0), copied value for value for all 57 games: undiscounted returns averaged over at least 3
episodes starting after 1-30 no-ops, episodes capped at 108k frames. Human-normalised score =
``(raw - random) / (human - random)``: 0 is the random agent, 1 the professional human tester.
"""

from __future__ import annotations

from rise_data.envs import atari_game

__all__ = ["ATARI_DATA", "ATARI_GAMES", "human_normalized"]

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


def _game(game_or_env_id: str) -> str:
    """``ALE/MsPacman-v5`` or ``ms_pacman`` -> ``ms_pacman``."""
    return atari_game(game_or_env_id) or game_or_env_id.strip().lower()


def human_normalized(game_or_env_id: str, raw: float) -> float | None:
    """Human-normalised score of ``raw`` on a game (``"ALE/Pong-v5"`` or ``"pong"``); None if not in the table."""
    scores = ATARI_DATA.get(_game(game_or_env_id))
    if scores is None:
        return None
    random, human = scores
    return (float(raw) - random) / (human - random)
