"""The vector env every consumer steps: agent observations + encoder frames, next-step autoreset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

if TYPE_CHECKING:
    from rise_data.envs.spec import EnvSpec


class Views(Protocol):
    """What the vector env needs of its family (``rise_data.envs.family.EnvFamily``): the two views."""

    def views(self, spec: EnvSpec, raw: Any) -> np.ndarray: ...


def to_agent_obs(frames: np.ndarray, size: int) -> np.ndarray:
    """RGB (N,H,W,3) or gray (N,H,W) uint8 frames -> (N,size,size) gray uint8 agent observations.

    The N frames are processed as one tall image: with INTER_AREA, output row ``i*size`` starts exactly
    at input row ``i*H`` (H/size is the same scale for every frame), so no pixel mixes two frames and the
    result equals the per-frame loop while costing two cv2 calls instead of 2N.
    """
    n, h, w = frames.shape[:3]
    gray = frames.reshape(n * h, w, 3) if frames.ndim == 4 else frames.reshape(n * h, w)
    if frames.ndim == 4:
        gray = cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_RGB2GRAY)
    if (h, w) == (size, size):
        return gray.reshape(n, size, size)
    return cv2.resize(gray, (size, n * size), interpolation=cv2.INTER_AREA).reshape(n, size, size)


@dataclass
class Step:
    """What one vector step returns. ``is_first[i]``: obs i starts a new episode (its action was ignored)."""

    obs: np.ndarray
    frame: np.ndarray | None
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    is_first: np.ndarray


class GymVector:
    """send/recv over a gymnasium vector env (async: the workers step while the caller files the last step)."""

    def __init__(self, env: Any):
        self.env = env
        self._async = hasattr(env, "step_async")
        self._pending = None

    def reset(self, seed: int | None = None):
        return self.env.reset(seed=seed)

    def send(self, actions: np.ndarray) -> None:
        if self._async:
            self.env.step_async(actions)
        else:
            self._pending = self.env.step(actions)

    def recv(self):
        return self.env.step_wait() if self._async else self._pending

    def step(self, actions: np.ndarray):
        self.send(actions)
        return self.recv()

    def close(self) -> None:
        self.env.close()


class FrameVectorEnv:
    """A vector env that yields agent observations and encoder frames, with next-step autoreset.

    ``env`` is the family's raw vector env (``reset``/``send``/``recv``/``step``/``close``); the family turns
    its raw observations into the two views (``family.views``).
    """

    def __init__(self, spec: EnvSpec, family: Views, env: Any, num_envs: int, frame_shape, n_actions: int):
        self.spec = spec
        self.family = family
        self.env = env
        self.num_envs = num_envs
        self.screen_size = int(spec.screen_size)
        self.frame_shape = None if frame_shape is None else tuple(frame_shape)
        self.obs_shape = (self.screen_size, self.screen_size)
        self.n_actions = int(n_actions)
        self._done = np.zeros(num_envs, bool)

    def _views(self, raw: Any) -> tuple[np.ndarray, np.ndarray | None]:
        frames = self.family.views(self.spec, raw)
        return to_agent_obs(frames, self.screen_size), frames if frames.ndim == 4 else None

    def reset(self, seed: int | None = None) -> Step:
        raw, _ = self.env.reset(seed=seed)
        obs, frame = self._views(raw)
        self._done[:] = False
        z = np.zeros(self.num_envs, bool)
        return Step(
            obs, frame, np.zeros(self.num_envs, np.float32), z, z.copy(), np.ones(self.num_envs, bool)
        )

    def send(self, actions: np.ndarray) -> None:
        self.env.send(np.asarray(actions, dtype=np.int64))

    def recv(self) -> Step:
        raw, reward, term, trunc, _ = self.env.recv()
        obs, frame = self._views(raw)
        is_first = self._done.copy()  # next-step autoreset: a done env returned its reset obs this step
        term, trunc = np.asarray(term, bool) & ~is_first, np.asarray(trunc, bool) & ~is_first
        trunc &= ~term  # both (MiniGrid at its step limit): a true terminal, no bootstrap
        self._done = term | trunc
        reward = np.where(is_first, 0.0, np.asarray(reward, np.float32)).astype(np.float32)
        return Step(obs, frame, reward, term, trunc, is_first)

    def step(self, actions: np.ndarray) -> Step:
        self.send(actions)
        return self.recv()

    def close(self) -> None:
        self.env.close()
