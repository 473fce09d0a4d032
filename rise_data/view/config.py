"""What ``rise-data view`` is asked to do: one frozen config, the source of its CLI options."""

from __future__ import annotations

from dataclasses import dataclass

from rise_data.options import ConfigError, param


@dataclass(frozen=True)
class ViewConfig:
    """The page ``rise-data view`` writes for a store (and whether to serve it)."""

    store: str = param(help="store directory, packed .zip or URL (s3://...), or a run directory")
    output: str | None = param(None, "folder to write the page into (default: ./NAME.view)")
    episodes: str | None = param(None, "episodes to show, e.g. 0,3,5-9 (default: first, last, best, worst)")
    max_frames: int = param(1000, "frames per episode in the player; a longer episode shows every k-th step")
    sim_steps: int = param(256, "steps per side of an episode's embedding similarity matrix")
    serve: bool = param(False, "serve the page on 127.0.0.1 after writing it (Ctrl-C stops)")
    port: int = param(8000, "port for --serve (0: any free port)")
    quiet: bool = param(False, "no progress bar")

    def __post_init__(self) -> None:
        if self.max_frames < 2 or self.sim_steps < 2:
            raise ConfigError("--max-frames and --sim-steps must be at least 2")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0-65535, got {self.port}")
