"""MiniWorld (e.g. ``MiniWorld-TMaze-v0``, a RISE paper family): OpenGL through pyglet's headless EGL.

Mesa's software renderer draws without a display or GPU (``pip install -e '.[envs]'``).
"""

from __future__ import annotations

import os

from rise_data.envs.family import register_family
from rise_data.envs.gymnasium_family import GymnasiumFamily


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


register_family(MiniWorldFamily())
