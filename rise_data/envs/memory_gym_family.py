"""memory-gym (``MortarMayhem-v0``, ``MysteryPath-v0``, ``SearingSpotlights-v0``, their ``Endless-`` and ``-Grid``
variants): Pleines et al.'s image memory benchmark, pure Python on pygame, rendered without a display.

Installed by ``make memory-gym`` (requirements/memory-gym.txt, ``--no-deps``: its metadata pins gymnasium
0.29.0 and pygame 2.4.0; it runs with rise's gymnasium 1.4.0 and pygame-ce, tests/rise_data/envs/test_memory_gym.py).
The env's reset parameters are its options (``--env-option command_count=[5]``); the spec records all of
them, defaults included, and every reset (autoresets too) passes them. Two default wrappers: ``transpose``
(pygame's ``surfarray`` images are (x, y); memory-gym's own ``render`` transposes them the same way) and,
where the actions are MultiDiscrete (move x, move y), ``flat_actions`` (one Discrete over their product).
"""

from __future__ import annotations

import importlib
import os

import gymnasium as gym
import numpy as np

from rise_data.envs.family import register_family
from rise_data.envs.gymnasium_family import GymnasiumFamily, apply_wrapper, register_wrapper
from rise_data.envs.spec import EnvError, EnvSpec

INSTALL = "make memory-gym (.venv/bin/python -m pip install --no-deps -r requirements/memory-gym.txt)"


def _transpose(env: gym.Env, _: str | None) -> gym.Env:
    space = env.observation_space
    shape = (space.shape[1], space.shape[0], *space.shape[2:])
    box = gym.spaces.Box(0, 255, shape, np.uint8)
    return gym.wrappers.TransformObservation(env, lambda o: np.ascontiguousarray(o.swapaxes(0, 1)), box)


def _flat_actions(env: gym.Env, _: str | None) -> gym.Env:
    nvec = tuple(int(n) for n in env.action_space.nvec)
    space = gym.spaces.Discrete(int(np.prod(nvec)))
    return gym.wrappers.TransformAction(env, lambda a: np.array(np.unravel_index(int(a), nvec)), space)


register_wrapper("transpose", _transpose, "transpose: swap the image's first two axes ((W,H,3) -> (H,W,3))")
register_wrapper(
    "flat_actions", _flat_actions, "flat_actions: MultiDiscrete actions as one Discrete (row-major)"
)


class _MemoryGymEnv(gym.Wrapper):
    """Passes the env's reset parameters on every reset (gymnasium's autoreset passes no options), and
    keeps ``close`` from ending the display the other memory-gym envs of the process draw on."""

    def __init__(self, env: gym.Env, params: dict):
        super().__init__(env)
        self.params = params

    def reset(self, *, seed=None, options=None):
        return self.env.reset(seed=seed, options={**self.params, **(options or {})})

    def close(self) -> None:
        # memory-gym's close is pygame.quit(): every env in the process shares pygame's one display, so
        # closing an evaluation env would break the training envs' next frame. The display ends with the
        # process.
        pass


class MemoryGymFamily(GymnasiumFamily):
    name = "memory_gym"
    prefixes = ("MortarMayhem", "MysteryPath", "SearingSpotlights", "Endless-")

    def _import(self) -> None:
        # pygame.init() opens an audio device; none is needed and ALSA prints errors where there is none
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        try:
            importlib.import_module("memory_gym")  # registers the ids with gymnasium
        except ImportError as e:
            raise EnvError(f"memory-gym envs need the memory_gym package ({e}); install it: {INSTALL}") from e

    def make_one(self, spec: EnvSpec) -> gym.Env:
        env = _MemoryGymEnv(self.target(spec)(), spec.kwargs)  # the env's constructor takes no options
        for item in spec.wrappers:
            env = apply_wrapper(env, item)
        return env

    def resolve(self, env_id: str, screen_size: int, wrappers: tuple[str, ...], kwargs: dict) -> EnvSpec:
        spec = EnvSpec(id=env_id, family=self.name, wrappers=wrappers, screen_size=screen_size)
        env = self.make_one(spec)
        try:
            if isinstance(env.observation_space, gym.spaces.Dict):
                raise EnvError(
                    f"{env_id} observes {list(env.observation_space.spaces)}: its task needs the vector part, "
                    "which rise does not feed the agent; use MortarMayhem-v0 or MortarMayhem-Grid-v0"
                )
            defaults = type(env.unwrapped).default_reset_parameters
            unknown = sorted(set(kwargs) - set(defaults))
            if unknown:
                raise EnvError(f"unknown {env_id} option(s) {unknown}; known: {sorted(defaults)}")
            kw = {**defaults, **kwargs}
            try:
                env.reset(seed=0, options=kw)  # memory-gym checks its parameters at reset, with asserts
            except (AssertionError, TypeError, ValueError) as e:
                raise EnvError(f"{env_id} rejects its options {kwargs}: {e or 'bad value'}") from e
            multi = isinstance(env.action_space, gym.spaces.MultiDiscrete)
        finally:
            env.close()
        default = ("transpose", "flat_actions") if multi else ("transpose",)
        return spec.replace(kwargs=kw, wrappers=wrappers or default)


register_family(MemoryGymFamily())
