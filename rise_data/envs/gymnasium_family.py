"""Any gymnasium image env: registered ids, ``module:EnvId``, ``module:function`` factories, CLI wrappers.

The agent needs uint8 image observations ((H,W,3) RGB or (H,W) gray) and Discrete actions. Dict
observations are reduced to their image key (``image_key=KEY``, picked automatically when one key holds
an image). Wrappers are strings, applied in order and recorded in the spec (``WRAPPERS`` lists them;
``register_wrapper`` adds one).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rise_data import plugins
from rise_data.envs.family import EnvFamily, allow_plugin, import_plugin_module, register_family
from rise_data.envs.spec import EnvError, EnvSpec
from rise_data.envs.vector import GymVector

WRAPPERS: dict[str, tuple[Callable[[gym.Env, str | None], gym.Env], str]] = {}
_IMAGE_KEYS = ("image", "screen", "pixels", "rgb", "observation")


def register_wrapper(name: str, fn: Callable[[gym.Env, str | None], gym.Env], help: str) -> None:
    """``--wrapper NAME[=ARG]`` applies ``fn(env, ARG or None)``."""
    WRAPPERS[name] = (fn, help)


def _int(arg: str | None, name: str) -> int:
    try:
        return int(arg)
    except (TypeError, ValueError):
        raise EnvError(f"--wrapper {name}=N takes an integer, got {arg!r}") from None


def _image_key(env: gym.Env, key: str | None) -> gym.Env:
    space = env.observation_space
    if not isinstance(space, gym.spaces.Dict) or key not in space.spaces:
        keys = list(space.spaces) if isinstance(space, gym.spaces.Dict) else "none (not a Dict)"
        raise EnvError(f"--wrapper image_key={key}: observation keys are {keys}")
    return gym.wrappers.TransformObservation(env, lambda o: o[key], space.spaces[key])


def _resize(env: gym.Env, arg: str | None) -> gym.Env:
    try:
        h, w = (int(x) for x in arg.lower().split("x")) if "x" in (arg or "") else (int(arg),) * 2
    except (TypeError, ValueError):
        raise EnvError(f"--wrapper resize takes HxW or N, got {arg!r}") from None
    return gym.wrappers.ResizeObservation(env, (h, w))


def _skip(env: gym.Env, arg: str | None) -> gym.Env:
    # max over the last two frames as Atari's frameskip does (flicker), rewards summed over the skip
    return gym.wrappers.MaxAndSkipObservation(env, skip=_int(arg, "frame_skip"))


register_wrapper("image_key", _image_key, "image_key=KEY: the image entry of Dict observations")
register_wrapper(
    "render",
    lambda env, _: gym.wrappers.AddRenderObservation(env, render_only=True),
    "the env's RGB render()",
)
register_wrapper("frame_skip", _skip, "frame_skip=N: repeat each action N times (max of last 2 frames)")
register_wrapper("resize", _resize, "resize=HxW: resize the image observation")
register_wrapper(
    "time_limit", lambda env, a: gym.wrappers.TimeLimit(env, _int(a, "time_limit")), "time_limit=N steps"
)


def apply_wrapper(env: gym.Env, item: str) -> gym.Env:
    name, _, arg = item.partition("=")
    if name not in WRAPPERS:
        known = ", ".join(f"{k} ({h})" for k, (_, h) in WRAPPERS.items())
        raise EnvError(f"unknown --wrapper '{name}'; known: {known}")
    return WRAPPERS[name][0](env, arg or None)


def _pick_image_key(space: gym.spaces.Dict, env_id: str) -> str:
    images = [
        k
        for k, s in space.spaces.items()
        if isinstance(s, gym.spaces.Box) and s.dtype == np.uint8 and len(s.shape) in (2, 3)
    ]
    preferred = [k for k in _IMAGE_KEYS if k in images]
    if len(images) == 1 or preferred:
        return images[0] if len(images) == 1 else preferred[0]
    raise EnvError(
        f"{env_id} observes a Dict with image keys {images or 'none'} of {list(space.spaces)}; "
        "pass --wrapper image_key=KEY"
    )


def _register_local_envs() -> None:
    """Register rise's own envs (the memory probe, the T-maze and their no-memory controls) with gymnasium, once."""
    if "rise/CueMemory-v0" not in gym.registry:
        gym.register("rise/CueMemory-v0", entry_point="rise_data.envs.probe:CueMemoryEnv")
    if "rise/CueVisible-v0" not in gym.registry:
        entry = "rise_data.envs.probe:CueMemoryEnv"
        gym.register("rise/CueVisible-v0", entry_point=entry, kwargs={"cue_at_query": True})
    if "rise/TMaze-v0" not in gym.registry:
        gym.register("rise/TMaze-v0", entry_point="rise_data.envs.tmaze:TMazeEnv")
    if "rise/TMazeVisible-v0" not in gym.registry:
        entry = "rise_data.envs.tmaze:TMazeEnv"
        gym.register("rise/TMazeVisible-v0", entry_point=entry, kwargs={"cue_at_junction": True})


class GymnasiumFamily(EnvFamily):
    """Generic gymnasium family (claims every id no other family claims)."""

    name = "gymnasium"
    module: str | None = None  # the package whose import registers this family's ids
    prefixes: tuple[str, ...] = ()
    default_wrappers: tuple[str, ...] = ()
    # Process-per-env vectorization when several envs run: only where an env step costs more than the
    # pipe round-trip (measured with benchmarks/collect.py, docs/envs.md).
    async_default = False
    mp_context: str | None = None

    def claims(self, env_id: str) -> bool:
        return not self.prefixes or env_id.rpartition(":")[2].startswith(self.prefixes)

    def _import(self) -> None:
        if self.module is not None:
            import_plugin_module(self.module, self.name)

    def target(self, spec: EnvSpec) -> Callable[..., gym.Env]:
        """The callable building one raw env: the factory, or gym.make of the (module-imported) id."""
        self._import()
        module, sep, name = (spec.factory or spec.id).rpartition(":")
        if sep:
            mod = import_plugin_module(module, spec.factory or spec.id)
            if spec.factory:
                fn = getattr(mod, name, None)
                if not callable(fn):
                    raise EnvError(f"factory {spec.factory}: {module} has no function '{name}'")
                return fn
        else:
            name = spec.id
        _register_local_envs()
        if name not in gym.registry:
            raise EnvError(
                f"unknown env id '{spec.id}'; use a registered gymnasium id, module:EnvId "
                "(e.g. minigrid:MiniGrid-MemoryS7-v0), a factory module:function, or ALE/<Game>-v5"
            )
        return functools.partial(gym.make, name)

    def make_one(self, spec: EnvSpec) -> gym.Env:
        kwargs = dict(spec.kwargs)
        if "render" in spec.wrappers:
            kwargs.setdefault("render_mode", "rgb_array")
        try:
            env = self.target(spec)(**kwargs)
        except TypeError as e:
            raise EnvError(f"{spec.id} rejects its options {sorted(spec.kwargs)}: {e}") from e
        for item in spec.wrappers:
            env = apply_wrapper(env, item)
        return env

    def resolve(self, env_id: str, screen_size: int, wrappers: tuple[str, ...], kwargs: dict) -> EnvSpec:
        factory = None
        module, sep, name = env_id.rpartition(":")
        if sep:
            mod = import_plugin_module(module, env_id)
            self._import()
            _register_local_envs()
            if name not in gym.registry and callable(getattr(mod, name, None)):
                factory = env_id
        spec = EnvSpec(
            id=env_id,
            family=self.name,
            kwargs=kwargs,
            wrappers=wrappers or self.default_wrappers,
            factory=factory,
            screen_size=screen_size,
        )
        env = self.make_one(spec)
        try:
            if isinstance(env.observation_space, gym.spaces.Dict):
                key = _pick_image_key(env.observation_space, env_id)
                spec = spec.replace(wrappers=(*spec.wrappers, f"image_key={key}"))
        finally:
            env.close()
        return spec

    def make_vector(self, spec: EnvSpec, num_envs: int, vectorization: str, num_threads: int):
        use_async = vectorization == "async" or (vectorization == "auto" and self.async_default)
        if use_async and num_envs > 1:
            fn = functools.partial(_worker_env, self.name, spec.to_json(), plugins.trusted())
            env = gym.vector.AsyncVectorEnv([fn] * num_envs, context=self.mp_context)
        else:
            env = gym.vector.SyncVectorEnv([functools.partial(self.make_one, spec)] * num_envs)
        _check_spaces(spec, env)
        space = env.single_observation_space
        frame_shape = tuple(space.shape) if len(space.shape) == 3 and space.shape[-1] == 3 else None
        return GymVector(env), frame_shape, int(env.single_action_space.n)

    def views(self, spec: EnvSpec, raw: Any) -> np.ndarray:
        raw = np.asarray(raw)
        return raw[..., 0] if raw.ndim == 4 and raw.shape[-1] == 1 else raw


def _worker_env(family: str, spec: dict, allowed: tuple[str, ...]) -> gym.Env:
    """One env in an AsyncVectorEnv worker (spawned workers start with an empty allow-list)."""
    from rise_data.envs.family import get_family

    for m in allowed:
        allow_plugin(m)
    return get_family(family).make_one(EnvSpec.from_json(spec))


def _check_spaces(spec: EnvSpec, env: Any) -> None:
    space = env.single_observation_space
    image = (
        isinstance(space, gym.spaces.Box)
        and space.dtype == np.uint8
        and (len(space.shape) == 2 or (len(space.shape) == 3 and space.shape[-1] in (1, 3)))
    )
    if not image:
        env.close()
        raise EnvError(
            f"{spec.id} observes {space}; rise needs image observations (H,W,3) or (H,W) uint8: "
            "try --wrapper render (the env's RGB render) or --wrapper image_key=KEY"
        )
    if not isinstance(env.single_action_space, gym.spaces.Discrete):
        env.close()
        raise EnvError(f"{spec.id} has action space {env.single_action_space}; rise needs Discrete actions")


register_family(GymnasiumFamily())
