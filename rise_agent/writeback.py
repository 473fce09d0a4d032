"""Online write-back: episodes played during online fine-tuning appended to the store they came from.

Rows get the same layout as ``rise-data collect`` writes (frames when the store keeps them), and the
embeddings the actor already computed for each frame are stored with them, under the store's own
embeddings name, so nothing is encoded twice. Only finished episodes are written, plus, at the end, the
running ones cut as truncated (as collect does); each write commits.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from rise_data.envs import Step
from rise_data.store import Episode, open_store


class _Open:
    def __init__(self) -> None:
        self.obs: list[np.ndarray] = []
        self.frame: list[np.ndarray] = []
        self.emb: list[np.ndarray] = []
        self.action: list[int] = []
        self.reward: list[float] = []


class StoreWriteBack:
    """Collects each env's episode and appends finished ones, with their embeddings, to the store."""

    def __init__(
        self, store_path: str, embedding: str | None, num_envs: int, config: dict, flush_episodes: int = 8
    ):
        self.store = open_store(store_path, mode="a")
        self.store.recover()
        self.embedding = embedding
        self.flush_episodes = flush_episodes
        self.open = [_Open() for _ in range(num_envs)]
        self.ready: list[tuple[Episode, np.ndarray | None]] = []
        self.store.log_write(
            "rise-agent train --online --write-back",
            config,
            policy={"name": "rise-agent online"},
            start_row=self.store.rows,
        )

    def _push(self, e: _Open, step: Step, i: int, emb: np.ndarray | None) -> None:
        e.obs.append(step.obs[i].copy())
        if self.store.has_frames:
            e.frame.append(step.frame[i].copy())
        if emb is not None:
            e.emb.append(emb[i])

    def first(self, step: Step, emb: Tensor | None) -> None:
        """The reset step: one new episode per env."""
        host = None if emb is None else emb.float().cpu().numpy()
        for i, e in enumerate(self.open):
            self._push(e, step, i, host)

    def add(self, actions: np.ndarray, step: Step, emb: Tensor | None) -> None:
        """One vector step (next-step autoreset semantics, as ``rise_data.envs.Step``)."""
        host = None if emb is None else emb.float().cpu().numpy()
        for i in range(len(self.open)):
            if step.is_first[i]:
                self.open[i] = _Open()
            else:
                self.open[i].action.append(int(actions[i]))
                self.open[i].reward.append(float(step.reward[i]))
            self._push(self.open[i], step, i, host)
            if step.terminated[i] or step.truncated[i]:
                self.ready.append(self._cut(self.open[i], bool(step.terminated[i]), i))
                self.open[i] = _Open()
        if len(self.ready) >= self.flush_episodes:
            self.flush()

    def _cut(self, e: _Open, terminated: bool, i: int) -> tuple[Episode, np.ndarray | None]:
        t = min(len(e.action), len(e.obs) - 1)
        ep = Episode(
            obs=np.stack(e.obs[: t + 1]),
            frame=np.stack(e.frame[: t + 1]) if self.store.has_frames else None,
            action=np.asarray(e.action[:t], np.int64),
            reward=np.asarray(e.reward[:t], np.float32),
            terminated=terminated,
            truncated=not terminated,
            env_index=i,
        )
        return ep, (np.stack(e.emb[: t + 1]) if e.emb else None)

    def flush(self) -> None:
        if not self.ready:
            return
        episodes = [ep for ep, _ in self.ready]
        n0, _ = self.store.append_episodes(episodes)
        if self.embedding is not None:
            self.store.append_embeddings(self.embedding, n0, np.concatenate([emb for _, emb in self.ready]))
        self.ready = []

    def close(self) -> None:
        """Cut the running episodes as truncated and write everything."""
        for i, e in enumerate(self.open):
            if min(len(e.action), len(e.obs) - 1) > 0:
                self.ready.append(self._cut(e, False, i))
        self.open = [_Open() for _ in self.open]
        self.flush()
