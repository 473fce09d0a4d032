"""What both command lines share: an app with ``--version``, and one-line errors for bad input.

No ``from __future__ import annotations`` here: typer resolves the ``--version`` option's annotation at
run time, and a string annotation could not see the callback defined inside ``new_app``.
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from rise_data import __version__


def new_app(prog: str, help: str) -> typer.Typer:
    """A typer app whose callback takes ``--version`` and prints ``PROG VERSION``."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, help=help)

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


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input -> one line on stderr and exit code 2; anything else is a bug and keeps its traceback.

    Every rise error type (StoreError, EnvError, EncoderError, PolicyError, CheckpointError) is a
    ValueError whose message names the problem and the fix. Warnings print as one line too.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda msg, *a, **k: typer.echo(f"warning: {msg}", err=True)
        try:
            yield
        except (ValueError, FileNotFoundError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
