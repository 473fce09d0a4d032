"""``rise-data view``: write the page for a store into a folder (and serve it if asked)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from tqdm import tqdm

from rise_data.store import StoreError, open_store
from rise_data.view.config import ViewConfig
from rise_data.view.data import episode_data, overview, select_episodes
from rise_data.view.page import GENERATOR, episode_script, index_html
from rise_data.view.run import is_run_dir, run_data
from rise_data.view.runpage import run_html

CURVE_POINTS = 2000  # rows per metric log on the run page (longer logs are thinned evenly)


def default_output(store: str) -> Path:
    """``./NAME.view`` for a store at ``.../NAME.zarr``, ``.../NAME.zip`` or ``s3://.../NAME``."""
    name = str(store).rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".zarr", ".zip"):
        name = name.removesuffix(suffix)
    return Path(f"{name or 'store'}.view")


PARTS = ("index.html", "episodes", "store")  # what a page folder holds


def prepare_output(folder: Path) -> None:
    """An empty folder, or one holding an earlier (or unfinished) page, which is removed; else refused."""
    if folder.exists():
        index = folder / "index.html"
        earlier = index.is_file() and f'content="{GENERATOR}"' in index.read_text(errors="replace")[:400]
        unfinished = not index.exists() and folder.is_dir() and all(p.name in PARTS for p in folder.iterdir())
        if not folder.is_dir() or not (earlier or unfinished):
            raise StoreError(
                f"{folder} exists and is not a page rise-data view wrote; choose another -o folder"
            )
        index.unlink(missing_ok=True)  # first: until the new one is written last, the folder is unfinished
        for sub in PARTS[1:]:
            shutil.rmtree(folder / sub, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def write_view(config: ViewConfig) -> Path:
    """Write the page of a store, or of a run directory; returns the path of its ``index.html``."""
    return write_run_view(config) if is_run_dir(config.store) else write_store_view(config)


def write_store_view(config: ViewConfig) -> Path:
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
    (folder / "episodes").mkdir()
    data = overview(store, shown, ep)
    for row in tqdm(data["shown"], desc="view: episodes", unit="ep", disable=config.quiet):
        script = episode_script(episode_data(store, row, config.max_frames, config.sim_steps))
        (folder / row["file"]).write_text(script)
    page = folder / "index.html"
    page.write_text(index_html(data))  # last: a folder without it is an unfinished page
    return page


def write_run_view(config: ViewConfig) -> Path:
    """The run page: curves, evaluations, config, and the store page of its last recorded episode."""
    folder = Path(config.output) if config.output else default_output(config.store)
    prepare_output(folder)
    data = run_data(config.store, CURVE_POINTS)
    recorded = open_store(data["recorded"]).num_episodes if data["recorded"] else 0
    if recorded:
        episode = config.episodes or str(recorded - 1)
        sub = dataclasses.replace(
            config, store=data["recorded"], output=str(folder / "store"), episodes=episode
        )
        write_store_view(sub)
        first = episode.replace("-", ",").split(",")[0]
        data["recorded_page"] = {"episode": int(first), "href": f"store/index.html#episode={first}"}
    page = folder / "index.html"
    page.write_text(run_html(data))
    return page
