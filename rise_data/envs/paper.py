"""The RISE paper's non-Atari families that install here (``pip install -e '.[envs]'``).

MiniGrid (``MiniGrid-MemoryS7-v0``: the agent's partial view, rendered RGB), ViZDoom (``VizdoomMyWayHome-v1``:
the engine and scenarios ship in the wheel; the ``screen`` image of its Dict observation) and MiniWorld
(``MiniWorld-TMaze-v0``: OpenGL through pyglet's headless EGL, mesa's software renderer, no display).
Procgen and memory-gym are families of their own (procgen_family.py, memory_gym_family.py; make procgen / make memory-gym). Each is the generic gymnasium family plus the package
that registers its ids, its default wrappers and its vectorization choice.
"""

from __future__ import annotations

import os
from pathlib import Path

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


class VizdoomFamily(GymnasiumFamily):
    name = "vizdoom"
    module = "vizdoom.gymnasium_wrapper"  # importing it registers the Vizdoom* ids
    prefixes = ("Vizdoom",)
    async_default = True  # one Doom engine per process; the step costs more than the pipe

    def make_vector(self, spec, num_envs: int, vectorization: str, num_threads: int):
        # Each Doom engine creates ./_vizdoom/ at start; engines starting together in a fresh folder race
        # on it ("Failed to create ./_vizdoom/ directory: File exists") and crash. Make it first.
        Path("_vizdoom").mkdir(exist_ok=True)
        return super().make_vector(spec, num_envs, vectorization, num_threads)


class MiniWorldFamily(GymnasiumFamily):
    name = "miniworld"
    module = "miniworld"
    prefixes = ("MiniWorld-",)
    async_default = True
    mp_context = "spawn"  # a forked child cannot reuse the parent's EGL context

    def _import(self) -> None:
        # pyglet opens an X display at import unless told to render headless (EGL, mesa llvmpipe works
        # without a GPU or /dev/dri); must happen before the first `import pyglet`.
        if not os.environ.get("DISPLAY"):
            os.environ.setdefault("PYGLET_HEADLESS", "true")
        super()._import()


for _family in (MiniGridFamily(), VizdoomFamily(), MiniWorldFamily()):
    register_family(_family)
