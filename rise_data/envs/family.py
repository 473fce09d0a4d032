"""The env-family seam: one class per family of envs, a registry users extend, and the two entry points.

A family knows how to turn an id into a spec (``resolve``), build the raw vector env (``make_vector``),
split its raw observations into the encoder frame / agent view (``views``) and normalize a score
(``normalize``). Nothing outside a family branches on the family's name.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from rise_data import plugins
from rise_data.envs.registry import (  # noqa: F401  (re-exported: the seam's entry points)
    families,
    family_for,
    get_family,
    register_family,
    register_scores,
    scores_of,
)
from rise_data.envs.spec import EnvError, EnvSpec
from rise_data.envs.vector import FrameVectorEnv


class EnvFamily:
    """Base family. Subclasses set ``name`` and override ``claims``/``resolve``/``make_vector``/``views``."""

    name = ""

    def claims(self, env_id: str) -> bool:
        """Whether ``env_id`` belongs to this family (later-registered families are asked first)."""
        return False

    def resolve(self, env_id: str, screen_size: int, wrappers: tuple[str, ...], kwargs: dict) -> EnvSpec:
        """The spec of ``env_id`` before probing (spaces unknown); refuses unknown options."""
        raise NotImplementedError

    def make_vector(
        self, spec: EnvSpec, num_envs: int, vectorization: str, num_threads: int
    ) -> tuple[Any, Any, int]:
        """(raw vector env with reset/send/recv/step/close, frame shape or None, number of actions)."""
        raise EnvError(f"{spec.id}: family '{self.name}' cannot build envs (its data came from elsewhere)")

    def views(self, spec: EnvSpec, raw: Any) -> np.ndarray:
        """The raw vector observation -> (N,H,W,3) RGB frames or (N,H,W) gray images, uint8."""
        return np.asarray(raw)

    def normalize(self, spec: EnvSpec, raw_return: float) -> dict[str, float]:
        """Reference-normalized scores (from the table registered with ``register_scores``)."""
        fn = scores_of(self.name)
        return {} if fn is None else {k: v for k, v in fn(spec, raw_return).items() if v is not None}


def allow_plugin(name: str) -> None:
    """Trust ``name``'s module (``mypkg.envs:make`` or ``mypkg:Env-v0``; :func:`rise_data.plugins.trust`): call
    it only for what the user named on the command line, never for what a store's metadata names."""
    plugins.trust(name)


# how to install the packages of rise's own optional families (the rest: pip install <package>)
_INSTALL = {
    "minigrid": "make setup-extras (or pip install -c constraints.txt -e '.[envs]')",
    "vizdoom": "make setup-extras (or pip install -c constraints.txt -e '.[envs]')",
    "miniworld": "make setup-extras (or pip install -c constraints.txt -e '.[envs]')",
    "procgen": "make procgen",
    "memory_gym": "make memory-gym",
}


def import_plugin_module(module: str, needed_by: str):
    """Import ``module`` if trusted (:mod:`rise_data.plugins`); else the one-line refusal naming --allow-plugin."""
    name = needed_by if ":" in needed_by else module
    if not plugins.is_trusted(module):
        raise EnvError(plugins.refusal(f"this env (module {module})", "env", name))
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        how = _INSTALL.get(top, f"pip install {top}")
        raise EnvError(f"cannot import {module} for env '{needed_by}' ({e}); install it with: {how}") from e


def env_spec(
    env_id: str, screen_size: int = 84, *, wrappers: tuple[str, ...] | list[str] = (), **kwargs: Any
) -> dict:
    """The JSON spec of an env the user named: family, id, kwargs, wrappers, probed spaces (see EnvSpec).

    Naming a plug-in here (``mypkg.envs:make``, ``mypkg:Env-v0``) allows importing it in this process.
    """
    return build_spec(env_id, screen_size, wrappers=wrappers, **kwargs).to_json()


def build_spec(
    env_id: str, screen_size: int = 84, *, wrappers: tuple[str, ...] | list[str] = (), **kwargs: Any
) -> EnvSpec:
    """:func:`env_spec` as an :class:`EnvSpec`."""
    if ":" in env_id:
        allow_plugin(env_id)
    family = family_for(env_id)
    spec = family.resolve(env_id, int(screen_size), tuple(wrappers), dict(kwargs))
    probe = make_env(spec, num_envs=1, vectorization="sync")
    try:
        return spec.replace(
            obs_shape=probe.obs_shape, frame_shape=probe.frame_shape, n_actions=probe.n_actions
        )
    finally:
        probe.close()


def make_env(
    spec: EnvSpec | dict | str, num_envs: int = 1, num_threads: int = 0, vectorization: str = "auto"
) -> FrameVectorEnv:
    """Build the vector env a spec (JSON dict, EnvSpec, or an env id with default options) describes.

    ``vectorization``: ``auto`` (the family's measured choice), ``sync`` or ``async`` (one process per env).
    ``num_threads``: Atari's C++ vector env threads (0: one per env up to the cores).
    """
    if isinstance(spec, str):
        spec = build_spec(spec)
    spec = EnvSpec.from_json(spec)
    if vectorization not in ("auto", "sync", "async"):
        raise EnvError(f"vectorization '{vectorization}': use auto, sync or async")
    family = get_family(spec.family)
    env, frame_shape, n_actions = family.make_vector(spec, num_envs, vectorization, num_threads)
    return FrameVectorEnv(spec, family, env, num_envs, frame_shape, n_actions)
