"""A look at a store in a browser: ``rise-data view`` writes a self-contained page (docs/viewer.md).

:func:`write_view` writes it from a :class:`ViewConfig`; :func:`run_view` also serves it on 127.0.0.1.
"""

from __future__ import annotations

from rise_data.view.config import ViewConfig


def write_view(config: ViewConfig):
    """Write the page for ``config.store``; returns the path of its ``index.html``."""
    from rise_data.view.build import write_view as write

    return write(config)


def run_view(config: ViewConfig, say=print):
    """What the command does: write the page, print where it is, serve it with ``config.serve``."""
    page = write_view(config)
    say(f"{config.store}: page written to {page} (open it in a browser, file:// works)")
    if config.serve:
        from rise_data.view.serve import serve

        serve(page.parent, config.port, say)
    return page


__all__ = ["ViewConfig", "run_view", "write_view"]
