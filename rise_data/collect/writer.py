"""Appending episodes: :func:`open_for_append` (the one append target) and :class:`EpisodeWriter`.

Collect and online training's ``--save-store`` / write-back both append through here: the store holds one
env only, a killed writer's crash tail is trimmed first, and every finished episode is committed as soon as
the writer thread is free (one append, one commit), so compression and disk writes overlap env stepping.
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

from rise_data.collect.rollout import Rollout
from rise_data.envs.spec import env_difference, same_env
from rise_data.store import Durability, Episode, StoreError, WritableStore, create_store, open_store
from rise_data.store.format import store_kind
from rise_data.store.write import is_empty_folder

PENDING_ROWS = (
    8192  # finished rows waiting for the writer before stepping waits (bounds memory: ~0.8 GB Atari)
)


class EpisodeWriter(threading.Thread):
    """Commits finished episodes in order: each turn appends everything handed over since the last one.

    With ``commit_rows`` it waits until that many rows are ready (or the end). The first error is
    re-raised in the caller. ``put`` waits while more than ``PENDING_ROWS`` rows are pending, so a slow
    disk slows stepping instead of filling memory. Written episodes' blocks go back to ``rollout`` (if given).
    Used by collect and by online training's ``--save-store`` / write-back.
    """

    def __init__(self, store: WritableStore, rollout: Rollout | None = None, commit_rows: int = 0):
        super().__init__(daemon=True, name="rise-episode-writer")
        self.store, self.rollout, self.commit_rows = store, rollout, commit_rows
        self.max_pending = max(PENDING_ROWS, 2 * commit_rows)
        self.cond = threading.Condition()
        self.pending: list[tuple[float, Episode]] = []
        self.waiting_rows = 0  # rows in self.pending
        self.pending_rows = 0  # rows handed over and not committed yet
        self.closed = False
        self.error: BaseException | None = None
        self.latency_max = 0.0  # seconds from an episode's end to its commit, worst seen
        self.commits = 0

    def run(self) -> None:
        while True:
            with self.cond:
                while not self.closed and (not self.pending or self.waiting_rows < self.commit_rows):
                    self.cond.wait()
                if not self.pending:
                    return
                batch, self.pending, self.waiting_rows = self.pending, [], 0
            try:
                if self.error is None:
                    self.store.append_episodes([ep for _, ep in batch])
                    self.commits += 1
                    self.latency_max = max(self.latency_max, time.perf_counter() - batch[0][0])
                    if self.rollout is not None:
                        self.rollout.recycle([ep for _, ep in batch])
            except BaseException as e:  # surfaced by put()/close()
                self.error = e
            with self.cond:
                self.pending_rows -= sum(len(ep.obs) for _, ep in batch)
                self.cond.notify_all()

    def put(self, episodes: list[Episode]) -> None:
        if self.error:
            raise self.error
        now = time.perf_counter()
        with self.cond:
            while self.pending_rows > self.max_pending and self.error is None:
                self.cond.wait()
            rows = sum(len(ep.obs) for ep in episodes)
            self.pending += [(now, ep) for ep in episodes]
            self.pending_rows += rows
            self.waiting_rows += rows
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.join()
        if self.error:
            raise self.error


def open_for_append(
    path: str | Path, spec: dict, frames: bool | None, layout=None, durability: Durability = "safe"
) -> WritableStore:
    """Open a store folder for appending episodes of env ``spec`` (same env only, crash tail trimmed), or
    create it. ``frames``: keep RGB frames (must match an existing store); None = as the store has them,
    or as the env has them for a new one. Collect and online ``--save-store`` both append through here."""
    path = Path(path)
    if store_kind(path) != "directory":
        raise StoreError(f"{path} is a packed or remote store (read-only); write into a store folder")
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file, not a store folder; give a folder path")
    if is_empty_folder(path):
        keep = spec["frame_shape"] is not None if frames is None else frames
        frame_shape = spec["frame_shape"] if keep else None
        return create_store(path, spec, spec["obs_shape"], frame_shape, layout, durability)
    store = open_store(path, mode="a", durability=durability)
    if not same_env(store.env, spec):
        raise StoreError(
            f"{path} holds {store.env['id']}, refusing to append a different env "
            f"({env_difference(store.env, spec)}); use a new store path"
        )
    if frames is not None and store.has_frames != frames:
        have = "with" if store.has_frames else "without"
        raise StoreError(
            f"{path} was collected {have} RGB frames; pass {'--frames' if store.has_frames else '--no-frames'}"
        )
    fixed = store.repair()
    if fixed["rows_dropped"] or fixed["episodes_dropped"]:
        warnings.warn(
            f"{path}: dropped {fixed['rows_dropped']} uncommitted rows left by an interrupted write",
            stacklevel=2,
        )
    return store
