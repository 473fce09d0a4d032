"""Options declared once: ``param(default, help)`` metadata is the ``--help`` of every generated option."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import typer

from rise_agent.cli import app as agent_app
from rise_agent.config import TrainConfig
from rise_data.cli import app as data_app
from rise_data.options import ConfigError, Form, build, cli_options, field_help, param


def _all_params():
    for prog, app in (("rise-data", data_app), ("rise-agent", agent_app)):
        for name, cmd in typer.main.get_command(app).commands.items():
            for p in cmd.params:
                yield f"{prog} {name} {p.name}", p


def test_every_option_of_both_clis_has_help():
    """Help from the field's metadata; "[a | b]" alone (a Literal's choices) is no help."""
    bare = [where for where, p in _all_params() if not (p.help or "").strip() or p.help.startswith("[")]
    assert bare == []


def test_help_needs_no_source(monkeypatch):
    """The help lives in field metadata: with no source to read (a zipped or frozen install) it is all there."""
    before = {o.dotted: o.help for o in cli_options(TrainConfig)}

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    monkeypatch.setattr(inspect, "getsourcelines", no_source)
    after = {o.dotted: o.help for o in cli_options(TrainConfig)}
    assert after == before and all(after.values())


def test_help_of_a_class_made_without_source():
    namespace: dict = {"param": param, "dataclass": dataclasses.dataclass}
    exec(  # a class with no file behind it
        "@dataclass(frozen=True)\nclass C:\n    path: str = param(help='where')\n"
        "    lr: float = param(1e-4, 'Adam learning rate')\n    tags: list = param(factory=list, help='repeatable')\n",
        namespace,
    )
    cls = namespace["C"]
    assert field_help(cls) == {"path": "where", "lr": "Adam learning rate", "tags": "repeatable"}
    with pytest.raises(TypeError):
        cls()  # path is required
    a, b = cls(path="x"), cls(path="y")
    assert a.tags == [] and a.tags is not b.tags and a.lr == 1e-4


@dataclasses.dataclass(frozen=True)
class _Inner:
    size: int = param(3, "inner size")


@dataclasses.dataclass(frozen=True)
class _Outer:
    store: str = param(help="the store")
    json: bool = param(False, "print JSON")
    keys: list[str] = param(factory=list, help="repeatable key")
    shape: tuple[int, ...] = param((1, 2), "comma-separated")
    inner: _Inner = param(factory=_Inner, help="nested")


def test_forms_and_build():
    opts = cli_options(
        _Outer,
        forms={
            "store": Form(argument=True),
            "json": Form(names=("--json",)),
            "inner.size": Form(hidden=True),
        },
    )
    by = {o.dotted: o for o in opts}
    assert by["store"].argument and by["store"].names == () and by["store"].default is dataclasses.MISSING
    assert by["json"].names == ("--json",)  # a plain flag, no --no-json
    assert by["inner.size"].names == ("--size",) and by["inner.size"].hidden
    assert by["shape"].default == "1,2" and by["keys"].type == list[str]
    built = build(_Outer, opts, {"store": "s", "json": True, "keys": ["a", "b"], "shape": "3,4", "size": 5})
    assert built == _Outer("s", True, ["a", "b"], (3, 4), _Inner(5))
    with pytest.raises(ConfigError, match="shape"):
        build(_Outer, opts, {"store": "s", "shape": "3,x"})
    with pytest.raises(TypeError, match="nope"):
        cli_options(_Outer, forms={"nope": Form()})
    with pytest.raises(TypeError, match="same option"):
        cli_options(_Outer, _Outer)  # two classes with one top-level name


def test_generated_train_flags():
    """The generated names users type: bare leaf names, prefixed where two sections share one."""
    flags = {n for o in cli_options(TrainConfig) for n in o.names}
    assert {"--lr", "--context-len", "--batch-size", "--online/--no-online"} <= flags
