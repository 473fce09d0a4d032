"""ViZDoom (e.g. ``VizdoomMyWayHome-v1``, a RISE paper family): the ``screen`` image of its Dict observation.

The engine and scenarios ship in the wheel (``pip install -e '.[envs]'``); one engine per process.
"""

from __future__ import annotations

from pathlib import Path

from rise_data.envs.family import register_family
from rise_data.envs.gymnasium_family import GymnasiumFamily


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


register_family(VizdoomFamily())
