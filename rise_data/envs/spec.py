"""The env spec: what a store records and exactly what rebuilds the env (zarr-codec style JSON)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rise_data.envs.errors import EnvError
from rise_data.envs.registry import get_family

OBS_TRANSFORM = {
    "kind": "rgb2gray-area",
    "gray": "ITU-R 601 luma (cv2 COLOR_RGB2GRAY)",
    "resize": "cv2 INTER_AREA",
}
# Keys to_json derives from the fields (they are checked, not stored twice); "kind" is the family under its
# pre-seam name, kept so stores and readers from before the family seam still work.
_DERIVED = ("kind", "action_space", "observation_space")
_FIELDS = (
    "id",
    "family",
    "factory",
    "kwargs",
    "wrappers",
    "screen_size",
    "obs_transform",
    "obs_shape",
    "frame_shape",
    "n_actions",
)


def _shape(v: Any) -> tuple[int, ...] | None:
    return None if v is None else tuple(int(x) for x in v)


@dataclass(frozen=True)
class EnvSpec:
    """How to build one env: family, id, constructor kwargs, wrappers, plus the probed spaces.

    ``id``: what the user named (``ALE/Pong-v5``, ``minigrid:MiniGrid-MemoryS7-v0``, ``mypkg.envs:make``).
    ``family``: the registered :class:`~rise_data.envs.family.EnvFamily` that builds it. ``factory``: the
    ``module:function`` plug-in that returns the env (None for gymnasium ids); never imported because a spec
    names it, only when the user passes it (see ``allow_plugin``). ``wrappers``: wrapper strings in the order
    applied (``image_key=screen``, ``frame_skip=4``...). ``extra``: family data (Atari's ``game``, an import's
    ``source``), kept verbatim. ``obs_shape``/``frame_shape``/``n_actions`` are filled by probing the env.
    """

    id: str
    family: str
    kwargs: dict = field(default_factory=dict)
    wrappers: tuple[str, ...] = ()
    factory: str | None = None
    screen_size: int = 84
    obs_transform: dict = field(default_factory=lambda: dict(OBS_TRANSFORM))
    obs_shape: tuple[int, ...] | None = None
    frame_shape: tuple[int, ...] | None = None
    n_actions: int | None = None
    extra: dict = field(default_factory=dict)

    def replace(self, **changes: Any) -> EnvSpec:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        """The JSON dict a store records (``from_json(to_json())`` is this spec)."""
        out = {
            "id": self.id,
            "family": self.family,
            "kind": self.family,
            "factory": self.factory,
            "kwargs": dict(self.kwargs),
            "wrappers": list(self.wrappers),
            "screen_size": self.screen_size,
            "obs_transform": dict(self.obs_transform),
            "obs_shape": None if self.obs_shape is None else list(self.obs_shape),
            "frame_shape": None if self.frame_shape is None else list(self.frame_shape),
            "n_actions": self.n_actions,
        }
        if self.n_actions is not None:
            out["action_space"] = {"type": "Discrete", "n": self.n_actions}
        if self.obs_shape is not None:
            frame = None if self.frame_shape is None else {"shape": list(self.frame_shape), "dtype": "uint8"}
            out["observation_space"] = {
                "obs": {"shape": list(self.obs_shape), "dtype": "uint8", "low": 0, "high": 255},
                "frame": frame,
            }
        clash = set(self.extra) & (set(_FIELDS) | set(_DERIVED))
        if clash:
            raise EnvError(f"env spec extra keys {sorted(clash)} shadow spec fields; rename them")
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, d: dict | EnvSpec) -> EnvSpec:
        """The spec a store's JSON records; also reads stores written before the family seam (``kind``)."""
        if isinstance(d, EnvSpec):
            return d
        if not isinstance(d, dict) or "id" not in d:
            raise EnvError(f"an env spec is a JSON object with an 'id'; got {str(d)[:80]}")
        family = d.get("family") or d.get("kind")
        if not family:
            raise EnvError(f"env spec of {d['id']} names no family; record 'family' (e.g. atari, gymnasium)")
        spec = cls(
            id=str(d["id"]),
            family=str(family),
            kwargs=dict(d.get("kwargs") or {}),
            wrappers=tuple(d.get("wrappers") or ()),
            factory=d.get("factory"),
            screen_size=int(d.get("screen_size", 84)),
            obs_transform=dict(d.get("obs_transform") or OBS_TRANSFORM),
            obs_shape=_shape(d.get("obs_shape")),
            frame_shape=_shape(d.get("frame_shape")),
            n_actions=None if d.get("n_actions") is None else int(d["n_actions"]),
            extra={k: v for k, v in d.items() if k not in _FIELDS and k not in _DERIVED},
        )
        return spec

    def normalize(self, raw_return: float) -> dict[str, float]:
        """Reference-normalized scores of a raw return (Atari: ``human_normalized``); {} when none known."""
        return get_family(self.family).normalize(self, raw_return)


_SAME_KEYS = ("id", "family", "factory", "kwargs", "wrappers", "screen_size", "obs_transform")
_SAME_KEYS += ("obs_shape", "frame_shape", "n_actions")


def same_env(a: dict | EnvSpec, b: dict | EnvSpec) -> bool:
    """Two specs describe the same data-generating env (what appending requires)."""
    a, b = EnvSpec.from_json(a), EnvSpec.from_json(b)
    return all(getattr(a, k) == getattr(b, k) for k in _SAME_KEYS)


def env_difference(a: dict | EnvSpec, b: dict | EnvSpec) -> str:
    """Why two specs are not the same env, in a few words."""
    a, b = EnvSpec.from_json(a), EnvSpec.from_json(b)
    if a.id != b.id:
        return f"{a.id} vs {b.id}"
    keys = sorted(set(a.kwargs) | set(b.kwargs))
    diff = [f"{k}={a.kwargs.get(k)} vs {b.kwargs.get(k)}" for k in keys if a.kwargs.get(k) != b.kwargs.get(k)]
    other = [k for k in _SAME_KEYS[1:] if k != "kwargs" and getattr(a, k) != getattr(b, k)]
    return ", ".join(diff + [f"{k} differs" for k in other]) or "specs differ"


def parse_env_options(items: list[str] | tuple[str, ...]) -> dict:
    """``["frameskip=4", "full_action_space=true"]`` -> kwargs (values parsed as JSON when they are JSON)."""
    import json

    out = {}
    for item in items:
        if "=" not in item:
            raise EnvError(f"--env-option takes KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out
