"""Environments: one factory, ``make_env``, used by collection, online training, evaluation and tests.

Every env yields two views of each step: the agent observation (``screen_size`` square grayscale uint8, one
frame; stacks are rebuilt at sample time) and the RGB frame the frozen encoder sees (Atari: native 210x160x3).
An :class:`EnvSpec` (JSON: ``to_json``/``from_json``) is what a store records, and ``make_env(spec)`` rebuilds
the same env from it, so online fine-tuning and evaluation run exactly the env the data came from.

Families (``atari``, ``gymnasium``, ``minigrid``, ``vizdoom``, ``miniworld``, ``procgen``, ``memory_gym``;
``register_family`` adds one)
own everything that differs between kinds of env: building the vector env, the two views, score
normalization. docs/envs.md is the user's guide.
"""

from rise_data.envs.atari import ATARI_DEFAULTS, AtariFamily, atari_game
from rise_data.envs.family import (
    EnvFamily,
    allow_plugin,
    build_spec,
    env_spec,
    families,
    family_for,
    get_family,
    make_env,
    register_family,
    register_scores,
)
from rise_data.envs.gymnasium_family import WRAPPERS, GymnasiumFamily, register_wrapper
from rise_data.envs.spec import OBS_TRANSFORM, EnvError, EnvSpec, env_difference, parse_env_options, same_env
from rise_data.envs.vector import FrameVectorEnv, Step, to_agent_obs

register_family(AtariFamily())


class _ImportedFamily(EnvFamily):
    """Stores imported from Minari datasets: data without an env rise can rebuild (make_vector refuses)."""

    name = "minari"


register_family(_ImportedFamily())
from rise_data.envs import (  # noqa: E402,F401  (register families; nothing heavy)
    memory_gym_family,
    minigrid_family,
    miniworld_family,
    procgen_family,
    vizdoom_family,
)

__all__ = [
    "parse_env_options",
    "ATARI_DEFAULTS",
    "OBS_TRANSFORM",
    "WRAPPERS",
    "AtariFamily",
    "EnvError",
    "EnvFamily",
    "EnvSpec",
    "FrameVectorEnv",
    "GymnasiumFamily",
    "Step",
    "allow_plugin",
    "atari_game",
    "build_spec",
    "env_difference",
    "env_spec",
    "families",
    "family_for",
    "get_family",
    "make_env",
    "register_family",
    "register_scores",
    "register_wrapper",
    "same_env",
    "to_agent_obs",
]
