"""Collection: step a vector env with a policy and append whole episodes to a store.

One writer per store: collect holds the store's writer lock (``rise_data.store.lock``) for its whole life, and
trims a killed writer's crash tail before appending. Steps go through the one rollout driver
(``rise_data.envs.rollout``); every finished episode is handed to a writer thread at once, which commits
whatever has finished each time it runs (one append, one commit), so compression and disk writes overlap
env stepping and a finished episode is durable within one write (``commit_latency_max_s`` in the summary
and history says how long that took). A kill -9 loses the running episodes and those handed to the writer
but not committed yet. Ctrl-C or SIGTERM stop at the next step: running episodes are cut as *truncated*
(they did not terminate) and committed, and collect exits cleanly; so does reaching ``--steps``. A second
Ctrl-C stops at once (the committed episodes stay).
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from rise_data.collect.policies import make_policy
from rise_data.envs import env_difference, env_spec, make_env, same_env
from rise_data.envs.rollout import Finished, Rollout
from rise_data.store import (
    Episode,
    Store,
    StoreError,
    StoreLayout,
    config_to_json,
    create_store,
    is_empty_folder,
    open_store,
    store_kind,
)
from rise_data.store.lock import store_lock


@dataclass(frozen=True)
class CollectConfig:
    """Everything ``rise-data collect`` was asked to do; saved in the store's history."""

    env_id: str
    store: str
    steps: int | None = None  # stop after at least this many actions (running episodes are cut, truncated)
    episodes: int | None = None  # or after this many finished episodes
    envs: int = 8
    seed: int = 0
    policy: str = "random"
    checkpoint: str | None = None
    frames: bool = True  # store the RGB frames the frozen encoder reads
    screen_size: int = 84
    env_options: dict = field(default_factory=dict)
    wrappers: list[str] = field(default_factory=list)  # gymnasium wrappers in order (envs.WRAPPERS)
    # commit once this many finished rows wait (0: whatever finished, as soon as the writer is free);
    # raising it trades durability for fewer commits (benchmarks/collect_commit.py measures the cost)
    commit_rows: int = 0
    layout: StoreLayout = field(default_factory=StoreLayout)
    progress: bool = True


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

    def __init__(self, store: Store, rollout: Rollout | None = None, commit_rows: int = 0):
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


class _Stop:
    """SIGINT/SIGTERM ask the loop to stop at the next step (nothing is cut mid-way); a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def open_for_append(path: str | Path, spec: dict, frames: bool | None, layout=None) -> Store:
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
        return create_store(path, spec, spec["obs_shape"], spec["frame_shape"] if keep else None, layout)
    store = open_store(path, mode="a")
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


def open_or_create(config: CollectConfig, spec: dict) -> Store:
    """The collect target: :func:`open_for_append`, warning when a random-policy seed repeats."""
    store = open_for_append(config.store, spec, config.frames, config.layout)
    used = {h["config"].get("seed") for h in store.meta.get("history", []) if h["command"] == "collect"}
    if config.seed in used and config.policy == "random":
        warnings.warn(
            f"seed {config.seed} was already used for {config.store}: episodes will repeat; pass --seed",
            stacklevel=2,
        )
    return store


def collect(config: CollectConfig) -> dict:
    """Run a collection holding the store's writer lock; returns a summary (rows/episodes, steps/s)."""
    if (config.steps is None) == (config.episodes is None):
        raise ValueError("give exactly one of --steps or --episodes")
    if (config.steps or config.episodes) <= 0 or config.envs <= 0:
        raise ValueError("--steps/--episodes and --envs must be positive")
    if config.commit_rows < 0:
        raise ValueError("commit_rows must be >= 0 (0: commit every finished episode at once)")
    spec = env_spec(
        config.env_id, screen_size=config.screen_size, wrappers=config.wrappers, **config.env_options
    )
    if config.frames and spec["frame_shape"] is None:
        raise ValueError(f"{config.env_id} has no RGB frames to store; pass --no-frames")
    with store_lock(config.store, "rise-data collect"):
        store = open_or_create(config, spec)
        policy = make_policy(config.policy, spec, config.envs, config.seed, config.checkpoint)
        start_row, start_episode = store.rows, store.num_episodes
        store.log_write("collect", config_to_json(config), policy=policy.describe(), start_row=start_row)
        rollout = Rollout(make_env(spec, num_envs=config.envs), obs=True, frames=config.frames)
        writer = EpisodeWriter(store, rollout, config.commit_rows)
        writer.start()
        t0 = time.perf_counter()
        try:
            interrupted = _run(config, rollout, policy, writer)
        finally:
            rollout.close()
            writer.close()
        seconds = time.perf_counter() - t0
        history = store.meta["history"]
        history[-1] = {
            **history[-1],
            "end_row": store.rows,
            "seconds": round(seconds, 3),
            "interrupted": interrupted,
            "commits": writer.commits,
            "commit_latency_max_s": round(writer.latency_max, 3),
        }
        store.write_meta(history=history)
    episodes = store.num_episodes - start_episode
    return {
        "store": str(config.store),
        "rows": store.rows - start_row,
        "steps": store.rows - start_row - episodes,
        "episodes": episodes,
        "seconds": seconds,
        "interrupted": interrupted,
        "total_rows": store.rows,
        "total_episodes": store.num_episodes,
        "commits": writer.commits,
        "commit_latency_max_s": writer.latency_max,
    }


def _run(config: CollectConfig, rollout: Rollout, policy, writer: EpisodeWriter) -> bool:
    """Step until the target or a stop request, handing each finished episode to the writer at once.

    The envs step the next actions while this thread files the step they returned (send before file).
    Returns whether a signal stopped it.
    """
    target = config.steps if config.steps is not None else config.episodes
    bar = tqdm(
        total=target, unit="step" if config.steps else "ep", disable=not config.progress, desc="collect"
    )
    kept = 0  # finished episodes handed to the writer

    def keep(finished: list[Finished]) -> None:
        nonlocal kept
        if config.episodes is not None:
            finished = finished[: config.episodes - kept]  # several envs can finish on the last step
        kept += len(finished)
        if finished:
            writer.put([f.episode for f in finished])

    with _Stop() as stop:
        try:
            step = rollout.reset(seed=config.seed)
            keep(rollout.file(step))
            rollout.send(policy.act(step))
            while not stop.requested:
                step = rollout.recv()
                rollout.send(
                    policy.act(step)
                )  # the envs step on while this thread files the step they returned
                keep(rollout.file(step))
                done = rollout.steps if config.steps is not None else kept
                bar.update(min(done, target) - bar.n)
                if done >= target:
                    break
            rollout.recv()  # the step in flight is not kept
        finally:
            bar.close()
        if config.steps is not None or stop.requested:
            # running episodes end here without terminating: keep them, marked truncated
            writer.put([f.episode for f in rollout.cut_running()])
    return stop.requested
