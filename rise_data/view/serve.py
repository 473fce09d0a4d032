"""``rise-data view --serve``: the page's folder over HTTP on 127.0.0.1 only (never another interface)."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

from rise_data.options import ConfigError

HOST = "127.0.0.1"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # one line per request would bury the URL
        pass


def make_server(folder: str | Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A server of ``folder`` bound to 127.0.0.1:``port`` (0: a free port); call ``serve_forever``."""
    handler = functools.partial(_Quiet, directory=str(folder))
    try:
        return http.server.ThreadingHTTPServer((HOST, port), handler)
    except OSError as e:
        raise ConfigError(
            f"cannot serve on {HOST}:{port} ({e.strerror}); choose another --port (0: any free)"
        ) from None


def serve(folder: str | Path, port: int, say=print) -> None:
    """Serve until Ctrl-C, after printing the URL."""
    server = make_server(folder, port)
    say(f"serving {folder} at http://{HOST}:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
