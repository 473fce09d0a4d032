"""Collection: step a vector env with a policy and append whole episodes to a store.

Episodes are buffered per env in RAM and handed to a writer thread when they end, so compression and
disk writes overlap env stepping. Each write commits (see ``store.py``): a kill at any moment loses at
most the episodes still in the buffer. Ctrl-C or SIGTERM cut the running episodes as *truncated*
(they did not terminate), commit them, and exit cleanly; so does reaching ``--steps``.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rise_data.envs import env_difference, env_spec, make_env, same_env
from rise_data.policies import make_policy
from rise_data.store import (
    Episode,
    Rows,
    Store,
    StoreError,
    StoreLayout,
    config_to_json,
    create_store,
    open_store,
)


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
    flush_rows: int = 2048  # hand finished episodes to the writer once this many rows are ready
    layout: StoreLayout = field(default_factory=StoreLayout)
    progress: bool = True


BLOCK_ROWS = 64  # rows per buffer block (64 Atari RGB frames = 6.4 MB)


class _BlockPool:
    """Fixed-size row blocks, handed back by the writer once written and reused.

    Reuse matters: copying a 100 kB frame into memory that was never touched costs several times the copy
    itself (page faults); recycled blocks are warm. A running episode is a list of blocks, so an episode of
    any length never reallocates.
    """

    def __init__(self, obs_shape: tuple, frame_shape: tuple | None):
        self.obs_shape, self.frame_shape = obs_shape, frame_shape
        self.free: queue.SimpleQueue = queue.SimpleQueue()

    def take(self) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            return self.free.get_nowait()
        except queue.Empty:
            obs = np.empty((BLOCK_ROWS, *self.obs_shape), np.uint8)
            frame = None if self.frame_shape is None else np.empty((BLOCK_ROWS, *self.frame_shape), np.uint8)
            return obs, frame

    def give(self, episodes: list[Episode]) -> None:
        for ep in episodes:
            frames = ep.frame.parts if ep.frame is not None else [None] * len(ep.obs.parts)
            for obs, frame in zip(ep.obs.parts, frames, strict=True):
                self.free.put((_block(obs), None if frame is None else _block(frame)))


def _block(view: np.ndarray) -> np.ndarray:
    return view if view.base is None else view.base


class _Running:
    """One env's episode in progress: observations and frames in pooled blocks, copied once per step."""

    def __init__(self, pool: _BlockPool):
        self.pool = pool
        self.obs: list[np.ndarray] = []
        self.frame: list[np.ndarray | None] = []
        self.action: list[int] = []
        self.reward: list[float] = []
        self.n = 0

    def push(self, obs: np.ndarray, frame: np.ndarray | None) -> None:
        j = self.n % BLOCK_ROWS
        if j == 0:
            o, f = self.pool.take()
            self.obs.append(o)
            self.frame.append(f)
        self.obs[-1][j] = obs
        if frame is not None:
            self.frame[-1][j] = frame
        self.n += 1

    @staticmethod
    def _rows(blocks: list, n: int) -> Rows:
        full, rest = divmod(n, BLOCK_ROWS)
        return Rows(blocks[:full] + ([blocks[full][:rest]] if rest else []))

    def cut(self, terminated: bool, truncated: bool, env_index: int) -> Episode:
        # an interrupt can land between appending an action and pushing the obs it led to: keep the
        # consistent prefix (T actions, T+1 observations)
        t = min(len(self.action), self.n - 1)
        return Episode(
            obs=self._rows(self.obs, t + 1),
            frame=None if self.frame[0] is None else self._rows(self.frame, t + 1),
            action=np.asarray(self.action[:t], np.int64),
            reward=np.asarray(self.reward[:t], np.float32),
            terminated=terminated,
            truncated=truncated,
            env_index=env_index,
        )


class _Writer(threading.Thread):
    """Appends batches of episodes in order; the first error is re-raised in the caller."""

    def __init__(self, store: Store, pool: _BlockPool):
        super().__init__(daemon=True, name="rise-collect-writer")
        self.store, self.pool, self.q, self.error = store, pool, queue.Queue(maxsize=4), None

    def run(self) -> None:
        while (batch := self.q.get()) is not None:
            if self.error is None:
                try:
                    self.store.append_episodes(batch)
                    self.pool.give(batch)
                except BaseException as e:  # surfaced by put()/close()
                    self.error = e

    def put(self, batch: list[Episode]) -> None:
        if self.error:
            raise self.error
        self.q.put(batch)

    def close(self) -> None:
        self.q.put(None)
        self.join()
        if self.error:
            raise self.error


def open_or_create(config: CollectConfig, spec: dict) -> Store:
    """Open the store for appending (same env only) or create it."""
    path = Path(config.store)
    if path.exists() and any(path.iterdir()):
        store = open_store(path, mode="a")
        if not same_env(store.env, spec):
            raise StoreError(
                f"{path} holds {store.env['id']}, refusing to append a different env ({env_difference(store.env, spec)}); "
                "use a new store path"
            )
        if store.has_frames != config.frames:
            have = "with" if store.has_frames else "without"
            raise StoreError(
                f"{path} was collected {have} RGB frames; pass {'--frames' if store.has_frames else '--no-frames'}"
            )
        dropped = store.recover()
        if dropped:
            warnings.warn(
                f"{path}: dropped {dropped} uncommitted rows left by an interrupted write", stacklevel=2
            )
        used = {h["config"].get("seed") for h in store.meta.get("history", []) if h["command"] == "collect"}
        if config.seed in used and config.policy == "random":
            warnings.warn(
                f"seed {config.seed} was already used for {path}: episodes will repeat; pass --seed",
                stacklevel=2,
            )
        return store
    return create_store(
        path, spec, spec["obs_shape"], spec["frame_shape"] if config.frames else None, config.layout
    )


def collect(config: CollectConfig) -> dict:
    """Run a collection; returns a summary (rows/episodes written, steps per second)."""
    if (config.steps is None) == (config.episodes is None):
        raise ValueError("give exactly one of --steps or --episodes")
    if (config.steps or config.episodes) <= 0 or config.envs <= 0:
        raise ValueError("--steps/--episodes and --envs must be positive")
    spec = env_spec(
        config.env_id, screen_size=config.screen_size, wrappers=config.wrappers, **config.env_options
    )
    if config.frames and spec["frame_shape"] is None:
        raise ValueError(f"{config.env_id} has no RGB frames to store; pass --no-frames")
    store = open_or_create(config, spec)
    env = make_env(spec, num_envs=config.envs)
    policy = make_policy(config.policy, spec, config.envs, config.seed, config.checkpoint)
    start_row = store.rows
    store.log_write("collect", config_to_json(config), policy=policy.describe(), start_row=start_row)
    frames = config.frames
    pool = _BlockPool(tuple(spec["obs_shape"]), tuple(spec["frame_shape"]) if frames else None)
    writer = _Writer(store, pool)
    writer.start()

    def fresh() -> _Running:
        return _Running(pool)

    running = [fresh() for _ in range(config.envs)]
    ready: list[Episode] = []
    ready_rows = steps = finished = 0
    target = config.steps if config.steps is not None else config.episodes
    bar = tqdm(
        total=target, unit="step" if config.steps else "ep", disable=not config.progress, desc="collect"
    )
    interrupted = False
    previous = (
        signal.signal(signal.SIGTERM, _raise_interrupt)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    t0 = time.perf_counter()
    try:
        step = env.reset(seed=config.seed)
        for i in range(config.envs):
            running[i].push(step.obs[i], step.frame[i] if frames else None)
        actions = policy.act(step)
        env.send(actions)
        while True:
            step = env.recv()
            next_actions = policy.act(step)
            env.send(next_actions)  # the envs step on while this thread files the step they returned
            done = step.terminated | step.truncated
            for i in range(config.envs):
                r = running[i]
                if not step.is_first[i]:  # a first obs starts the fresh buffer the last episode left
                    r.action.append(actions[i])
                    r.reward.append(step.reward[i])
                    steps += 1
                r.push(step.obs[i], step.frame[i] if frames else None)
                if done[i]:
                    ready.append(r.cut(bool(step.terminated[i]), bool(step.truncated[i]), i))
                    ready_rows += r.n
                    finished += 1
                    running[i] = fresh()  # before anything else, so an interrupt cannot cut it twice
            actions = next_actions
            done_so_far = steps if config.steps is not None else finished
            bar.update(min(done_so_far, target) - bar.n)
            if done_so_far >= target:
                env.recv()  # the step in flight is not kept
                break
            if ready_rows >= config.flush_rows:
                writer.put(ready)
                ready, ready_rows = [], 0
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        bar.close()
        env.close()
    if config.steps is not None or interrupted:
        # running episodes end here without terminating: keep them, marked truncated
        ready += [r.cut(False, True, i) for i, r in enumerate(running) if min(len(r.action), r.n - 1) > 0]
    if config.episodes is not None and finished > config.episodes:
        ready = ready[: len(ready) - (finished - config.episodes)]  # several envs finished on the last step
    if ready:
        writer.put(ready)
    writer.close()
    seconds = time.perf_counter() - t0
    history = store.meta["history"]
    history[-1] = {
        **history[-1],
        "end_row": store.rows,
        "seconds": round(seconds, 3),
        "interrupted": interrupted,
    }
    store._write_meta(history=history)
    return {
        "store": str(config.store),
        "rows": store.rows - start_row,
        "steps": int(store.rows - start_row - (store.num_episodes - _episodes_before(store, start_row))),
        "episodes": store.num_episodes - _episodes_before(store, start_row),
        "seconds": seconds,
        "interrupted": interrupted,
        "total_rows": store.rows,
        "total_episodes": store.num_episodes,
    }


def _episodes_before(store: Store, row: int) -> int:
    starts = store.read("episodes/start")
    return int(np.searchsorted(starts, row))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
