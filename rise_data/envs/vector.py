"""The vector env every consumer steps: agent observations + encoder frames, next-step autoreset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rise_data.envs.agent_obs import to_agent_obs

if TYPE_CHECKING:
    from rise_data.envs.spec import EnvSpec


class Views(Protocol):
    """What the vector env needs of its family (``rise_data.envs.family.EnvFamily``): the two views."""

    def views(self, spec: EnvSpec, raw: Any) -> np.ndarray: ...


@dataclass
class Step:
    """What one vector step returns. ``is_first[i]``: obs i starts a new episode (its action was ignored)."""

    obs: np.ndarray
    frame: np.ndarray | None
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    is_first: np.ndarray


class ViewStep(Step):
    """A step whose agent view is made from its frames on the first read of ``obs``, once.

    A loop that sends the next actions before it reads ``obs`` (collect with a random policy) has the view
    made while the envs step; one that never reads it (an actor that makes the view on its device) never
    pays for it.
    """

    def __init__(self, frames: np.ndarray, size: int, *rest: np.ndarray | None):
        self._frames, self._size = frames, size
        super().__init__(None, *rest)

    @property
    def obs(self) -> np.ndarray:
        if self._obs is None:
            self._obs = to_agent_obs(self._frames, self._size)
        return self._obs

    @obs.setter
    def obs(self, value: np.ndarray | None) -> None:
        self._obs = value


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

    def _step(self, raw: Any, *rest: np.ndarray) -> Step:
        """The step of raw observations ``raw``: frames at once, the agent view when first read."""
        frames = self.family.views(self.spec, raw)
        return ViewStep(frames, self.screen_size, frames if frames.ndim == 4 else None, *rest)

    def reset(self, seed: int | None = None) -> Step:
        raw, _ = self.env.reset(seed=seed)
        self._done[:] = False
        z = np.zeros(self.num_envs, bool)
        return self._step(raw, np.zeros(self.num_envs, np.float32), z, z.copy(), np.ones(self.num_envs, bool))

    def send(self, actions: np.ndarray) -> None:
        self.env.send(np.asarray(actions, dtype=np.int64))

    def recv(self) -> Step:
        raw, reward, term, trunc, _ = self.env.recv()
        is_first = self._done.copy()  # next-step autoreset: a done env returned its reset obs this step
        term, trunc = np.asarray(term, bool) & ~is_first, np.asarray(trunc, bool) & ~is_first
        trunc &= ~term  # both (MiniGrid at its step limit): a true terminal, no bootstrap
        self._done = term | trunc
        reward = np.where(is_first, 0.0, np.asarray(reward, np.float32)).astype(np.float32)
        return self._step(raw, reward, term, trunc, is_first)

    def step(self, actions: np.ndarray) -> Step:
        self.send(actions)
        return self.recv()

    def close(self) -> None:
        self.env.close()
