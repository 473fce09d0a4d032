"""Config dataclasses as the single source of CLI options and of the strict JSON loader.

Each parameter is declared once, in a frozen config dataclass, with its ``--help`` text in the field's
metadata: ``lr: float = param(1e-4, "Adam learning rate")``. :func:`cli_options` turns the fields of one
or more config trees into typer options (``--batch-size``; nested fields keep their own name, e.g.
``--context-len``, unless two sections share a name); a :class:`Form` says how a field shows on one
command line (positional, other names, hidden). :func:`build` makes a config from the values typed;
:func:`apply_options` overlays typed values on a JSON tree (``--config FILE``, ``--resume``).
:func:`from_json` is the one strict loader (train, resume and evaluation): unknown or mistyped keys are
refused with the key's dotted path.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Set
from dataclasses import MISSING, dataclass
from typing import Any, Literal, Union, get_args, get_origin

from rise_data.errors import UserError

__all__ = [
    "ConfigError",
    "Form",
    "Option",
    "apply_options",
    "build",
    "cli_options",
    "explicit",
    "field_help",
    "from_json",
    "param",
    "to_json",
    "with_options",
]


class ConfigError(UserError):
    """A config file or option does not fit the config classes; the message names the key."""


def param(
    default: Any = MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | Any = MISSING,
    kw_only: bool | Any = MISSING,
) -> Any:
    """A config field and its ``--help`` text: ``lr: float = param(1e-4, "Adam learning rate")``.

    ``factory`` makes a mutable default (``dataclasses.field(default_factory=...)``); neither a default
    nor a factory: a required field (``param(help="...")``).
    """
    kw: dict[str, Any] = {"metadata": {"help": help}}
    if kw_only is not MISSING:
        kw["kw_only"] = kw_only
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, **kw)
    return dataclasses.field(default=default, **kw)


def field_help(cls: type) -> dict[str, str]:
    """``{field: help}`` of a config dataclass, from the metadata :func:`param` declares (no source read)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class Form:
    """How one field shows on a command line; by default ``--name`` (``--name/--no-name`` for a bool)."""

    argument: bool = False  # positional, in field order
    names: tuple[str, ...] = ()  # replace the generated names (a bool becomes a plain flag)
    aliases: tuple[str, ...] = ()  # more names beside the generated one
    hidden: bool = False  # accepted, not listed in --help
    help: str | None = None  # this command's wording (default: the field's own help)
    required: bool = False  # must be given although the config has a default (a placeholder)


@dataclass(frozen=True)
class Option:
    """One CLI parameter generated from the config field at ``path`` of ``root``."""

    root: type  # the config class given to cli_options that holds the field
    path: tuple[str, ...]  # e.g. ("network", "context_len")
    flag: str  # python identifier typer sees (also the click parameter name)
    type: Any  # the field's type with Optional/Literal/tuple reduced to what the CLI parses
    default: Any  # MISSING: required
    help: str
    names: tuple[str, ...]  # --long and short names (empty for an argument)
    argument: bool = False
    hidden: bool = False

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _hints(cls: type) -> dict[str, Any]:
    module = inspect.getmodule(cls)
    return typing.get_type_hints(cls, globalns=vars(module) if module else None)


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) for ``X | None``."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _cli_type(tp: Any, argument: bool) -> Any:
    inner, optional = _unwrap(tp)
    if get_origin(inner) is Literal:
        return str  # checked against the choices by from_json; listed in the help text
    if get_origin(inner) is list or (argument and get_origin(inner) is tuple):
        return list[str]  # a repeatable option, or several arguments
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
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        yield (*prefix, f.name), tp, default, helps[f.name]


def _long_names(flag: str, tp: Any) -> tuple[str, ...]:
    long = "--" + flag.replace("_", "-")
    return (f"{long}/--no-{flag.replace('_', '-')}",) if _unwrap(tp)[0] is bool else (long,)


def cli_options(
    *classes: type, skip: Set[str] = frozenset(), forms: Mapping[str, Form] | None = None
) -> list[Option]:
    """One :class:`Option` per leaf field of ``classes`` (dotted paths in ``skip`` are left out).

    A nested field gets its bare name (``--lr``) unless another leaf shares it; then the section
    prefixes it (``--replay-capacity``). ``forms`` (by dotted path) make a field positional, rename,
    alias or hide it, or word its help for this command.
    """
    forms = forms or {}
    leaves = [(cls, *leaf) for cls in classes for leaf in _walk(cls) if ".".join(leaf[0]) not in skip]
    unknown = set(forms) - {".".join(leaf[1]) for leaf in leaves}
    if unknown:
        raise TypeError(f"forms for fields that are not options: {sorted(unknown)}")
    counts: dict[str, int] = {}
    for _, path, *_ in leaves:
        counts[path[-1]] = counts.get(path[-1], 0) + 1
    out = []
    for cls, path, tp, default, help_ in leaves:
        form = forms.get(".".join(path), Form())
        flag = path[-1] if counts[path[-1]] == 1 else "_".join(path)
        if isinstance(default, tuple) and not form.argument:
            default = ",".join(str(v) for v in default)
        inner, _ = _unwrap(tp)
        help_ = form.help if form.help is not None else help_
        if get_origin(inner) is Literal:
            help_ = f"{help_} [{' | '.join(map(str, get_args(inner)))}]".strip()
        names = () if form.argument else (*(form.names or _long_names(flag, tp)), *form.aliases)
        default = MISSING if form.required else default
        out.append(
            Option(
                cls,
                path,
                flag,
                _cli_type(tp, form.argument),
                default,
                help_,
                names,
                form.argument,
                form.hidden,
            )
        )
    flags = [o.flag for o in out]
    if len(set(flags)) != len(flags):
        raise TypeError(
            f"two config classes declare the same option: {sorted(f for f in flags if flags.count(f) > 1)}"
        )
    return out


def with_options(func: Callable, options: list[Option]) -> Callable:
    """``func`` with the generated options added to its signature (typer reads ``__signature__``)."""
    import typer  # only a command line needs it; configs import this module too

    sig = inspect.signature(func)
    hints = typing.get_type_hints(func, include_extras=True)  # string annotations -> the real Annotated types
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in sig.parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    for o in options:
        if o.argument:
            info = typer.Argument(help=o.help, show_default=False)
        else:
            info = typer.Option(*o.names, help=o.help, hidden=o.hidden, show_default=True)
        default = ... if o.default is MISSING else o.default
        params.append(
            inspect.Parameter(
                o.flag,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=typing.Annotated[o.type, info],
            )
        )
    func.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return func


def explicit(ctx, options: list[Option], values: dict[str, Any]) -> dict[str, Any]:
    """``{dotted path: value}`` for the options typed on the command line (not defaults)."""
    out = {}
    for o in options:
        source = ctx.get_parameter_source(o.flag)
        if source is not None and source.name == "COMMANDLINE":  # typer may vendor its own click
            out[o.dotted] = values[o.flag]
    return out


def build(cls: type, options: list[Option], values: Mapping[str, Any]) -> Any:
    """The ``cls`` config from the values of its generated options (strictly, as :func:`from_json`)."""
    tree: dict = {}
    for o in options:
        if o.root is cls and o.flag in values:
            _set(tree, o.dotted, values[o.flag])
    return from_json(cls, tree, "options")


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
    except UserError:
        raise  # the config's own check: its message already names the option and the fix
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {_path.rstrip('.') or 'config'}: {e}") from None
