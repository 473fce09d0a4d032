"""What both command lines share: an app with ``--version``, one-line errors and the exit codes.

Exit codes (both ``rise-data`` and ``rise-agent``; README "Exit codes"):

- 0: success;
- 1: invalid data: a store or file that is damaged or fails ``check`` (:class:`CorruptStoreError`);
- 2: usage: bad arguments or input the user can fix (every rise error type is a ValueError whose message
  names the problem and the fix; a missing file, a path that cannot be written, a held lock);
- 3: a bug in rise: the traceback is printed, please report it. (130: interrupted with Ctrl-C.)

No ``from __future__ import annotations`` here: typer resolves the ``--version`` option's annotation at
run time, and a string annotation could not see the callback defined inside ``new_app``.
"""

import errno
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import click
import typer

from rise_data import __version__
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


def exit_code(e: BaseException) -> int:
    """The exit code of an exception that reached the command line (the mapping, in one place)."""
    if isinstance(e, CorruptStoreError):
        return EXIT_INVALID
    if isinstance(e, (ValueError, OSError)):
        return EXIT_USAGE
    return EXIT_BUG


def error_line(e: BaseException) -> str:
    """One line naming the problem and the fix (OS errors: the path, what went wrong, what to do)."""
    if isinstance(e, OSError) and not isinstance(e, ValueError) and e.errno is not None:
        where = f"{e.filename}: " if e.filename else ""
        fix = _OS_FIXES.get(e.errno, "check the path and its permissions")
        return f"{where}{e.strerror or e}; {fix}"
    return " ".join(str(e).split("\n"))


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors -> exit codes: invalid data 1 and usage 2 as one line on stderr; a bug 3 with its traceback.

    Every rise error type (StoreError, EnvError, EncoderError, PolicyError, CheckpointError, LockHeld) is
    a ValueError whose message names the problem and the fix. Warnings print as one line too.
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
