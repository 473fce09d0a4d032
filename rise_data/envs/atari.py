"""Atari (``ALE/Pong-v5``): ale_py's C++ ``AtariVectorEnv`` with BTR's protocol.

Machado et al. 2018 / BTR paper App. D: frameskip 4 with a max-pool over the last two frames, sticky
actions 0.25, up to 30 no-ops at reset, episodes capped at 108k emulator frames, no life-loss terminals,
raw (unclipped) rewards. The vector env returns the max-pooled RGB frame and the agent observation is
derived from it (ITU-R 601 gray, area resize), so both views come from one emulator pass.

The family claims the Atari ids gymnasium registers (ale_py.registration) with what each id means:
``ALE/Pong-v5`` is frameskip 4, sticky actions 0.25, the minimal action set (v5's registration, with
BTR's max-pool and no-ops on top: ``ATARI_DEFAULTS``); ``PongNoFrameskip-v4`` (what CleanRL and SB3 users
type) is frameskip 1, no sticky actions, the minimal action set and, like gymnasium's AtariEnv, no
max-pool and no no-ops (``PongNoFrameskip-v0``: sticky actions 0.25). The spec records these as its
kwargs; ``--env-option`` overrides any of them.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

import numpy as np

from rise_data.envs.family import EnvFamily
from rise_data.envs.spec import EnvError, EnvSpec

ATARI_DEFAULTS: dict[str, Any] = {
    "frameskip": 4,
    "maxpool": True,
    "repeat_action_probability": 0.25,
    "noop_max": 30,
    "max_num_frames_per_episode": 108_000,
    "full_action_space": False,
    "use_fire_reset": False,
    "episodic_life": False,
    "reward_clipping": False,
}


# gymnasium-registered id -> what it changes from ATARI_DEFAULTS (ale_py.registration's kwargs)
_NO_FRAMESKIP = {"frameskip": 1, "maxpool": False, "noop_max": 0}
REGISTERED_IDS: tuple[tuple[re.Pattern, dict[str, Any]], ...] = (
    (re.compile(r"ALE/([A-Za-z0-9]+)-v\d+"), {}),
    (re.compile(r"([A-Za-z0-9]+)NoFrameskip-v4"), {**_NO_FRAMESKIP, "repeat_action_probability": 0.0}),
    (re.compile(r"([A-Za-z0-9]+)NoFrameskip-v0"), {**_NO_FRAMESKIP, "repeat_action_probability": 0.25}),
)


def registered_settings(env_id: str) -> tuple[str, dict[str, Any]] | None:
    """(CamelCase game name, the id's settings over ``ATARI_DEFAULTS``) of an Atari id; None for others."""
    for pattern, settings in REGISTERED_IDS:
        m = pattern.fullmatch(env_id)
        if m:
            return m.group(1), settings
    return None


def atari_game(env_id: str) -> str | None:
    """``ALE/MsPacman-v5`` -> ``ms_pacman``, ``BreakoutNoFrameskip-v4`` -> ``breakout``, ``ALE/UpNDown-v5``
    -> ``up_n_down``; None for non-Atari ids.

    The CamelCase name is matched against ale-py's ROM ids with underscores and case ignored (those
    squashed ids are unique), so irregular names (``up_n_down``, ``tic_tac_toe_3d``) resolve too; a name
    ale-py does not know falls back to the CamelCase split, which the family then refuses by name.
    """
    found = registered_settings(env_id)
    if found is None:
        return None
    name = found[0]
    return _rom_ids().get(name.lower()) or re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


@functools.cache
def _rom_ids() -> dict[str, str]:
    from ale_py import roms

    return {rom.replace("_", ""): rom for rom in roms.get_all_rom_ids()}


class AtariFamily(EnvFamily):
    name = "atari"

    def claims(self, env_id: str) -> bool:
        return atari_game(env_id) is not None

    def resolve(self, env_id: str, screen_size: int, wrappers: tuple[str, ...], kwargs: dict) -> EnvSpec:
        from ale_py import roms

        game = atari_game(env_id)
        if roms.get_rom_path(game) is None:
            raise EnvError(
                f"{env_id}: ale-py has no ROM '{game}'; Atari ids look like ALE/Pong-v5 or PongNoFrameskip-v4"
            )
        kw = {**ATARI_DEFAULTS, **registered_settings(env_id)[1], **kwargs}
        unknown = set(kw) - set(ATARI_DEFAULTS)
        if unknown:
            raise EnvError(f"unknown Atari option(s) {sorted(unknown)}; known: {sorted(ATARI_DEFAULTS)}")
        if wrappers:
            raise EnvError(
                f"Atari envs take no --wrapper (got {list(wrappers)}); use --env-option, e.g. frameskip=4"
            )
        return EnvSpec(id=env_id, family=self.name, kwargs=kw, screen_size=screen_size, extra={"game": game})

    def make_vector(self, spec: EnvSpec, num_envs: int, vectorization: str, num_threads: int):
        from ale_py import ALEInterface, LoggerMode
        from ale_py.vector_env import AtariVectorEnv

        ALEInterface.setLoggerMode(LoggerMode.Error)  # the banner on stderr on every env creation
        # ale's C++ pool is already asynchronous (send/recv): `vectorization` has nothing to choose here.
        env = AtariVectorEnv(
            spec.extra.get("game") or atari_game(spec.id),
            num_envs,
            num_threads=num_threads or min(num_envs, os.cpu_count() or 1),
            img_height=210,
            img_width=160,
            grayscale=False,
            stack_num=1,
            autoreset_mode="NextStep",
            **spec.kwargs,
        )
        return env, (210, 160, 3), int(env.single_action_space.n)

    def views(self, spec: EnvSpec, raw: Any) -> np.ndarray:
        return np.asarray(raw)[:, 0]  # stack_num=1
