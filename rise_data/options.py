"""Config dataclasses as the single source of CLI options and of the strict JSON loader.

Each parameter is declared once, in a frozen config dataclass with a trailing ``# comment``, an
attribute docstring (tyro's conventions) or a comment block right above it: that is its ``--help`` text. :func:`cli_options` turns the fields of a config tree
into typer options (``--batch-size``; nested fields keep their own name, e.g. ``--context-len``,
unless two sections share a name); :func:`apply_options` builds the config from defaults, an optional
``--config FILE`` and the options the user actually typed. :func:`from_json` is the one strict loader
(train, resume and evaluation): unknown or mistyped keys are refused with the key's dotted path.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import re
import tokenize
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass
from typing import Any, Literal, Union, get_args, get_origin

import typer

__all__ = ["ConfigError", "Option", "apply_options", "cli_options", "field_help", "from_json", "to_json"]


class ConfigError(ValueError):
    """A config file or option does not fit the config classes; the message names the key."""


@dataclass(frozen=True)
class Option:
    """One CLI option generated from a config field at ``path`` (e.g. ``("network", "context_len")``)."""

    path: tuple[str, ...]
    flag: str  # python identifier typer sees (also the click parameter name)
    type: Any  # the field's type with Optional/Literal/tuple reduced to what the CLI parses
    default: Any
    help: str
    names: tuple[str, ...]  # --long and short aliases


def _hints(cls: type) -> dict[str, Any]:
    module = inspect.getmodule(cls)
    return typing.get_type_hints(cls, globalns=vars(module) if module else None)


def field_help(cls: type) -> dict[str, str]:
    """``{field: help}`` read from the class source (empty when the source is unavailable).

    A field's help is its trailing ``# comment`` (on any line of the field, also when a formatter wraps
    it over several lines), else its attribute docstring (a string statement right below the field),
    else the block of ``#`` comment lines right above it.
    """
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    above: dict[str, str] = {}  # each field's leading comment block
    block: list[str] = []  # comment lines since the last statement or blank line
    pending: str | None = None  # the field whose statement is being read
    last: str | None = None  # the field whose statement just ended (an attribute docstring may follow)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            block = block if tok.line.strip() else []  # a blank line ends a comment block
            continue
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names and pending is None:
            pending, last = tok.string, None
            above[pending], block = " ".join(block), []
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("# ").strip()
            if pending:
                out[pending] = f"{out[pending]} {text}" if pending in out else text
            elif tok.start[1] == 4:
                block.append(text)
        elif tok.type == tokenize.NEWLINE and pending:
            pending, last = None, pending
        elif tok.type == tokenize.STRING and last and tok.start[1] == 4 and last not in out:
            out[last] = " ".join(ast.literal_eval(tok.string).split())
            last = None
        else:
            last, block = None, []
    return {**{k: v for k, v in above.items() if v}, **out}


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) for ``X | None``."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _cli_type(tp: Any) -> Any:
    inner, optional = _unwrap(tp)
    if get_origin(inner) is Literal:
        return str  # checked against the choices by from_json; listed in the help text
    if get_origin(inner) is tuple:
        return str  # comma-separated on the command line ("32,64,64")
    if inner in (int, float, str, bool):
        return inner | None if optional else inner
    raise TypeError(f"no CLI form for field type {tp!r}")


def _walk(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any, Any, str]]:
    hints, helps = _hints(cls), field_help(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_config(tp):
            yield from _walk(tp, (*prefix, f.name))
            continue
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = None
        yield (*prefix, f.name), tp, default, helps.get(f.name, "")


def cli_options(
    cls: type,
    *,
    skip: set[str] = frozenset(),
    aliases: dict[str, tuple[str, ...]] | None = None,
    defaults: dict[str, Any] | None = None,
) -> list[Option]:
    """One :class:`Option` per leaf field of ``cls`` (dotted paths in ``skip`` are left out).

    A nested field gets its bare name (``--lr``) unless another leaf shares it; then the section
    prefixes it (``--replay-capacity``). ``aliases`` adds short names, ``defaults`` overrides shown
    defaults (for fields whose dataclass default is a placeholder).
    """
    aliases, defaults = aliases or {}, defaults or {}
    leaves = [leaf for leaf in _walk(cls) if ".".join(leaf[0]) not in skip]
    counts: dict[str, int] = {}
    for path, *_ in leaves:
        counts[path[-1]] = counts.get(path[-1], 0) + 1
    out = []
    for path, tp, default, help_ in leaves:
        dotted = ".".join(path)
        flag = path[-1] if counts[path[-1]] == 1 else "_".join(path)
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        long = "--" + flag.replace("_", "-")
        inner, _ = _unwrap(tp)
        if inner is bool:
            long = f"{long}/--no-{flag.replace('_', '-')}"
        if get_origin(inner) is Literal:
            help_ = f"{help_} [{' | '.join(map(str, get_args(inner)))}]".strip()
        out.append(
            Option(
                path,
                flag,
                _cli_type(tp),
                defaults.get(dotted, default),
                help_,
                (long, *aliases.get(dotted, ())),
            )
        )
    return out


def with_options(func: Callable, options: list[Option]) -> Callable:
    """``func`` with the generated options added to its signature (typer reads ``__signature__``)."""
    sig = inspect.signature(func)
    hints = typing.get_type_hints(func, include_extras=True)  # string annotations -> the real Annotated types
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in sig.parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    for o in options:
        opt = typer.Option(*o.names, help=o.help, show_default=True)
        params.append(
            inspect.Parameter(
                o.flag,
                inspect.Parameter.KEYWORD_ONLY,
                default=o.default,
                annotation=typing.Annotated[o.type, opt],
            )
        )
    func.__signature__ = sig.replace(parameters=params)
    return func


def explicit(ctx, options: list[Option], values: dict[str, Any]) -> dict[str, Any]:
    """``{dotted path: value}`` for the options typed on the command line (not defaults)."""
    out = {}
    for o in options:
        source = ctx.get_parameter_source(o.flag)
        if source is not None and source.name == "COMMANDLINE":  # typer may vendor its own click
            out[".".join(o.path)] = values[o.flag]
    return out


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def apply_options(base: dict, overrides: dict[str, Any]) -> dict:
    """A copy of the JSON tree ``base`` with ``{dotted path: value}`` overrides applied."""
    tree = json.loads(json.dumps(base))
    for dotted, value in overrides.items():
        _set(tree, dotted, value)
    return tree


def to_json(config: Any) -> dict:
    """The JSON tree of a config dataclass (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _coerce(tp: Any, value: Any, where: str, key: str) -> Any:
    inner, optional = _unwrap(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: key '{key}' may not be null")
    if _is_config(inner):
        return from_json(inner, value, where, f"{key}.")
    if get_origin(inner) is Literal:
        if value not in get_args(inner):
            raise ConfigError(f"{where}: key '{key}' must be one of {list(get_args(inner))}, got {value!r}")
        return value
    if get_origin(inner) is tuple:
        if isinstance(value, str):
            value = [v for v in re.split(r"[,\s]+", value.strip()) if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: key '{key}' must be a list, got {value!r}")
        item = get_args(inner)[0]
        return tuple(_coerce(item, v, where, f"{key}[{i}]") for i, v in enumerate(value))
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if inner is int and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if inner in (int, float, str, bool) and not (
        isinstance(value, inner) and not (inner is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: key '{key}' must be {inner.__name__}, got {value!r}")
    return value


def from_json(cls: type, tree: dict, where: str = "config", _path: str = "") -> Any:
    """Build ``cls`` from a JSON tree, strictly: unknown keys, wrong types and bad values are refused.

    Errors read ``<where>: key 'replay.capasity' is unknown (known in replay: ...)``.
    """
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: {_path or 'the config'} must be an object, got {type(tree).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(tree) - names)
    if unknown:
        keys = ", ".join(f"'{_path}{k}'" for k in unknown)
        raise ConfigError(f"{where}: unknown key(s) {keys}; known here: {', '.join(sorted(names))}")
    values = {k: _coerce(hints[k], v, where, f"{_path}{k}") for k, v in tree.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {_path.rstrip('.') or 'config'}: {e}") from None
