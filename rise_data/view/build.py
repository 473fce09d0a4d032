"""``rise-data view``: write the page for a store into a folder (and serve it if asked)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tqdm import tqdm

from rise_data.store import StoreError, open_store
from rise_data.view.config import ViewConfig
from rise_data.view.data import episode_data, overview, select_episodes
from rise_data.view.page import GENERATOR, episode_script, index_html


def default_output(store: str) -> Path:
    """``./NAME.view`` for a store at ``.../NAME.zarr``, ``.../NAME.zip`` or ``s3://.../NAME``."""
    name = str(store).rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".zarr", ".zip"):
        name = name.removesuffix(suffix)
    return Path(f"{name or 'store'}.view")


def prepare_output(folder: Path) -> None:
    """An empty folder, or one holding an earlier page (replaced); anything else is refused."""
    if folder.exists():
        index = folder / "index.html"
        earlier = index.is_file() and f'content="{GENERATOR}"' in index.read_text(errors="replace")[:400]
        if not folder.is_dir() or (any(folder.iterdir()) and not earlier):
            raise StoreError(
                f"{folder} exists and is not a page rise-data view wrote; choose another -o folder"
            )
        shutil.rmtree(folder / "episodes", ignore_errors=True)
    (folder / "episodes").mkdir(parents=True, exist_ok=True)


def write_view(config: ViewConfig) -> Path:
    """Write ``index.html`` and one script per shown episode; returns the page's path."""
    store = open_store(config.store)
    if store.rows == 0:
        raise StoreError(
            f"{store.path} is empty (0 rows); collect some first: rise-data collect ENV_ID {store.path}"
        )
    ep = store.episodes()
    shown = select_episodes(store, config.episodes, ep["return"])
    folder = Path(config.output) if config.output else default_output(config.store)
    prepare_output(folder)
    data = overview(store, shown, ep)
    for row in tqdm(data["shown"], desc="view: episodes", unit="ep", disable=config.quiet):
        script = episode_script(episode_data(store, row, config.max_frames, config.sim_steps))
        (folder / row["file"]).write_text(script)
    page = folder / "index.html"
    page.write_text(index_html(data))  # last: a folder without it is an unfinished page
    return page
