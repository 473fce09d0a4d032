"""The registries of the env seam: families by name (asked newest first whether they claim an id) and
reference-score tables by family.

It imports no other env module, so the spec (``EnvSpec.normalize``) and the families both look names up
here without an import circle. A family is any object with ``name``, ``claims(id)`` and ``normalize``
(``rise_data.envs.family.EnvFamily``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rise_data.envs.errors import EnvError

_FAMILIES: dict[str, Any] = {}
_SCORES: dict[str, Callable[[Any, float], dict[str, float]]] = {}


def register_family(family: Any) -> Any:
    """Add (or replace) a family; it is asked before those registered earlier whether it claims an id."""
    if not family.name:
        raise EnvError(f"{type(family).__name__} has no name; set the class attribute 'name'")
    _FAMILIES.pop(family.name, None)
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Any:
    if name not in _FAMILIES:
        raise EnvError(
            f"unknown env family '{name}'; registered: {sorted(_FAMILIES)} (register_family adds one)"
        )
    return _FAMILIES[name]


def families() -> list[str]:
    return list(_FAMILIES)


def family_for(env_id: str) -> Any:
    for family in reversed(list(_FAMILIES.values())):
        if family.claims(env_id):
            return family
    raise EnvError(f"no env family claims '{env_id}'; registered: {sorted(_FAMILIES)}")


def register_scores(family: str, fn: Callable[[Any, float], dict[str, float]]) -> None:
    """Reference scores of a family: ``fn(spec, raw_return) -> {"human_normalized": x}``."""
    _SCORES[family] = fn


def scores_of(family: str) -> Callable[[Any, float], dict[str, float]] | None:
    return _SCORES.get(family)
