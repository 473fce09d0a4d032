"""What both command lines share: an app with ``--version``, one-line errors and the exit codes.

Exit codes (both ``rise-data`` and ``rise-agent``; README "Exit codes"):

- 0: success;
- 1: invalid data: a store or file that is damaged or fails ``check`` (:class:`CorruptStoreError`);
- 2: usage: bad arguments or input the user can fix (a :class:`~rise_data.errors.UserError`, whose message
  names the problem and the fix; an OS error on a path the user named: missing, not writable, disk full);
- 3: a bug in rise: the traceback is printed, please report it. (130: interrupted with Ctrl-C.)

No ``from __future__ import annotations`` here: typer resolves the ``--version`` option's annotation at
run time, and a string annotation could not see the callback defined inside ``new_app``.
"""

import errno
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Set
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, TypeGuard

import click
import typer

from rise_data import __version__
from rise_data.errors import UserError
from rise_data.options import Form, build, cli_options, param, with_options
from rise_data.store import CorruptStoreError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3

# what the user can do about an OS error on a path they named
_OS_FIXES = {
    errno.EACCES: "it is read-only for you: choose a writable location, or copy the store and work on the copy",
    errno.EPERM: "it is read-only for you: choose a writable location, or copy the store and work on the copy",
    errno.EROFS: "it is on a read-only file system: choose a writable location",
    errno.ENOTDIR: "a file is in the way: give a store directory (a new path, or an existing store)",
    errno.EEXIST: "a file is in the way: give a store directory (a new path, or an existing store)",
    errno.EISDIR: "it is a directory: give a file path",
    errno.ENOSPC: "the disk is full: free space or choose another location",
    errno.ENOENT: "check the path",
}


def new_app(prog: str, help: str) -> typer.Typer:
    """A typer app whose callback takes ``--version`` and prints ``PROG VERSION``."""
    help = f"{help}\n\nExit codes: 0 ok, 1 invalid data, 2 usage error, 3 a bug in rise (please report it)."
    # plain click help: rich help shows flags such as --json as "<bool>", as if they took a value
    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        help=help,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )

    def show_version(value: bool) -> None:
        if value:
            typer.echo(f"{prog} {__version__}")
            raise typer.Exit()

    @app.callback()
    def main(
        version: Annotated[
            bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version.")
        ] = False,
    ) -> None:
        pass

    main.__doc__ = help
    return app


def _user_path_error(e: BaseException) -> TypeGuard[OSError]:
    """An OS error about a path the user named (missing, read-only, in the way), or a full disk."""
    if not isinstance(e, OSError):
        return False
    return e.errno == errno.ENOSPC or (e.errno in _OS_FIXES and e.filename is not None)


def exit_code(e: BaseException) -> int:
    """The exit code of an exception that reached the command line (the mapping, in one place).

    :class:`CorruptStoreError` 1; any other :class:`UserError` and an OS error on a user's path 2;
    anything else (a ``ValueError`` from numpy, a ``KeyError``, ...) is a bug in rise: 3.
    """
    if isinstance(e, CorruptStoreError):
        return EXIT_INVALID
    if isinstance(e, UserError) or _user_path_error(e):
        return EXIT_USAGE
    return EXIT_BUG


def error_line(e: BaseException) -> str:
    """One line naming the problem and the fix (OS errors: the path, what went wrong, what to do)."""
    if _user_path_error(e):
        where = f"{e.filename}: " if e.filename else ""
        fix = _OS_FIXES.get(e.errno or 0, "check the path and its permissions")
        return f"{where}{e.strerror or e}; {fix}"
    return " ".join(str(e).split("\n"))


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors -> exit codes: invalid data 1 and usage 2 as one line on stderr; a bug 3 with its traceback.

    Every error meant for the user is a :class:`UserError` whose message names the problem and the fix.
    A bug's traceback goes to stderr, then one line pointing at it. Warnings print as one line too.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: typer.echo(f"warning: {msg}", err=True)
        try:
            yield
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise  # typer's own exits and usage errors keep their codes
        except Exception as e:
            code = exit_code(e)
            if code == EXIT_BUG:
                traceback.print_exc(file=sys.stderr)
                typer.echo(f"error: {type(e).__name__}: {e} (a bug in rise; please report it)", err=True)
            else:
                typer.echo(f"error: {error_line(e)}", err=True)
            raise typer.Exit(code) from None


def echo(text: str, quiet: bool = False, err: bool = False) -> None:
    """Print unless ``--quiet`` (errors never go through here: they always print)."""
    if not quiet:
        typer.echo(text, err=err)


# -- options every command shares, and commands whose options are their config classes ------------
QUIET = Form(names=("--quiet", "-q"))
JSON = Form(names=("--json",))


def flag(name: str) -> Form:
    """A bool field as a plain ``--name`` flag (no ``--no-name``)."""
    return Form(names=(f"--{name}",))


@dataclass(frozen=True)
class Quiet:
    """How a command prints: progress and results, or nothing but errors."""

    quiet: bool = param(False, "Print only errors.")


@dataclass(frozen=True)
class Printing:
    """How a command that reports prints: text or JSON, or nothing but errors."""

    as_json: bool = param(False, "Print JSON.")
    quiet: bool = param(False, "Print only errors.")


def command(
    app: typer.Typer,
    *classes: type,
    name: str | None = None,
    skip: Set[str] = frozenset(),
    forms: Mapping[str, Form] | None = None,
) -> Callable[[Callable], Callable]:
    """Register ``func(*configs)`` as a command whose options are the fields of ``classes``.

    The configs are built from what was typed (one-line errors when they refuse it) and passed in order.
    """
    options = cli_options(*classes, skip=skip, forms=forms)

    def register(func: Callable) -> Callable:
        def run(**values):
            with user_errors():
                configs = [build(cls, options, values) for cls in classes]
            return func(*configs)

        run.__name__, run.__doc__ = func.__name__, func.__doc__
        app.command(name)(with_options(run, options))
        func.options = options  # type: ignore[attr-defined]  # what the command line offers (tests read it)
        return func

    return register
