"""MiniGrid (e.g. ``MiniGrid-MemoryS7-v0``, a RISE paper family): the agent's partial view, rendered RGB.

The generic gymnasium family plus the package that registers its ids (``pip install -e '.[envs]'``) and
its default wrapper.
"""

from __future__ import annotations

import gymnasium as gym

from rise_data.envs.family import register_family
from rise_data.envs.gymnasium_family import GymnasiumFamily, register_wrapper


def _minigrid_rgb(env: gym.Env, arg: str | None) -> gym.Env:
    from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

    return ImgObsWrapper(RGBImgPartialObsWrapper(env, tile_size=int(arg or 8)))


register_wrapper(
    "minigrid_rgb", _minigrid_rgb, "minigrid_rgb[=TILE]: MiniGrid's partial view as RGB (7*TILE px)"
)


class MiniGridFamily(GymnasiumFamily):
    name = "minigrid"
    module = "minigrid"
    prefixes = ("MiniGrid-",)
    default_wrappers = ("minigrid_rgb",)  # the agent's own 7x7 view: what makes Memory* a memory task


register_family(MiniGridFamily())
