"""Trust for plug-in code: the one set of names the user trusts, for encoders, envs and policies alike.

A store, checkpoint or env spec may name code to import (``mymod:make_encoder``, ``mymod:MyEnv-v0``,
``mymod:make_env``). rise imports such a module only if the user named it this process: on the command
line (``--allow-plugin mymod:MyEnv-v0``, or directly as ``--env mymod:MyEnv-v0`` / ``--encoder
mymod:build``), never because a file's metadata names it. Naming ``mod:thing`` trusts the module ``mod``
(importing it is what runs its code). The packages rise pins (:data:`PINNED`) are always trusted.

>>> with trusting(["mymod:MyEnv-v0"]):  # doctest: +SKIP
...     make_env(spec_naming_mymod)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["PINNED", "is_trusted", "module_of", "refusal", "trust", "trusted", "trusting"]

# Packages rise depends on or pins as env families: importing them runs no code the user did not install for rise.
PINNED = frozenset({"rise_data", "rise_agent", "ale_py", "gymnasium", "minigrid", "vizdoom", "miniworld"})
# Names the user trusts in this process; mutated in place only (spawned env workers get ``trusted()``).
_TRUSTED: set[str] = set()


def module_of(name: str) -> str:
    """``mymod.sub`` of ``mymod.sub:thing`` (a bare module name is its own module)."""
    return name.split(":", 1)[0]


def trust(*names: str) -> None:
    """Trust what the user named (``module:thing`` or ``module``), for the rest of this process."""
    _TRUSTED.update(n for n in names if n)


def trusted() -> tuple[str, ...]:
    """The names trusted now (sorted), e.g. to hand to a spawned worker that calls :func:`trust` with them."""
    return tuple(sorted(_TRUSTED))


@contextmanager
def trusting(names: Iterable[str]) -> Iterator[None]:
    """Trust ``names`` inside the block only (a command's ``--allow-plugin`` list)."""
    added = [n for n in names if n and n not in _TRUSTED]
    trust(*added)
    try:
        yield
    finally:
        _TRUSTED.difference_update(added)


def is_trusted(name: str, also: Iterable[str] = ()) -> bool:
    """Whether the module of ``name`` may be imported: pinned, trusted, or in ``also`` (trusted for one call)."""
    module = module_of(name)
    if module.split(".")[0] in PINNED:
        return True
    return any(module_of(n) == module for n in (*_TRUSTED, *also))


def refusal(where: str, kind: str, name: str) -> str:
    """The one-line refusal every plug-in kind gives: what needs it and the option that trusts it."""
    return f"{where} needs plug-in {kind} '{name}'; rerun with --allow-plugin {name} if you trust that code"
