"""Collection: step a vector env with a policy and append whole episodes to a store.

One writer per store: collect holds the store's writer lock (``rise_data.store.lock``) for its whole life, and
trims a killed writer's crash tail before appending. Steps go through the one rollout driver
(``rise_data.collect.rollout``); every finished episode is handed to a writer thread at once, which commits
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

from tqdm import tqdm

from rise_data.collect.config import CollectConfig
from rise_data.collect.policies import make_policy
from rise_data.collect.rollout import Finished, Rollout
from rise_data.collect.writer import EpisodeWriter, open_for_append
from rise_data.envs import env_spec, make_env
from rise_data.options import ConfigError
from rise_data.store import WritableStore
from rise_data.store.format import config_to_json
from rise_data.store.lock import store_lock


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


def open_or_create(config: CollectConfig, spec: dict) -> WritableStore:
    """The collect target: :func:`open_for_append`, warning when a random-policy seed repeats."""
    store = open_for_append(config.store, spec, config.frames, config.layout, config.durability)
    used = {h["config"].get("seed") for h in store.meta.get("history", []) if h["command"] == "collect"}
    if config.seed in used and config.policy == "random":
        warnings.warn(
            f"seed {config.seed} was already used for {config.store}: episodes will repeat; pass --seed",
            stacklevel=2,
        )
    return store


def collect(config: CollectConfig) -> dict:
    """Run a collection holding the store's writer lock; returns a summary (rows/episodes, steps/s)."""
    spec = env_spec(
        config.env_id, screen_size=config.screen_size, wrappers=config.wrappers, **config.env_options
    )
    if config.frames and spec["frame_shape"] is None:
        raise ConfigError(f"{config.env_id} has no RGB frames to store; pass --no-frames")
    with store_lock(config.store, "rise-data collect"):
        store = open_or_create(config, spec)
        policy = make_policy(config.policy, spec, config.num_envs, config.seed, config.checkpoint)
        start_row, start_episode = store.rows, store.num_episodes
        store.log_write("collect", config_to_json(config), policy=policy.describe(), start_row=start_row)
        rollout = Rollout(make_env(spec, num_envs=config.num_envs), obs=True, frames=config.frames)
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

    The envs step the next actions while this thread files the step they returned (send before file): the
    agent view is made there too, when filing first reads ``step.obs``, unless the policy read it to act.
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
