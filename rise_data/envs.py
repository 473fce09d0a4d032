"""Environments: one factory, ``make_env``, used by collection, online training, evaluation and tests.

Every env yields two views of each step: the agent observation (84x84 grayscale uint8, one frame; stacks
are rebuilt at sample time) and the RGB frame the frozen encoder sees (Atari: native 210x160x3).
The env spec is a JSON dict: it is what a store records, and ``make_env(spec)`` rebuilds the same env
from it, so online fine-tuning and evaluation run exactly the env the data came from.

Atari ids (``ALE/Pong-v5``) use ale_py's C++ ``AtariVectorEnv`` with BTR's protocol (Machado et al. 2018;
BTR paper App. D): frameskip 4 with a max-pool over the last two frames, sticky actions 0.25, up to 30
no-ops at reset, episodes capped at 108k emulator frames, no life-loss terminals, raw (unclipped)
rewards. The vector env returns the max-pooled RGB frame and the agent observation is derived from it
(ITU-R 601 gray, area resize), so both views come from one emulator pass.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

ATARI_DEFAULTS: dict[str, Any] = {
    "frameskip": 4,
    "maxpool": True,
    "repeat_action_probability": 0.25,
    "noop_max": 30,
    "max_num_frames_per_episode": 108_000,
    "full_action_space": False,
    "use_fire_reset": False,
    "episodic_life": False,
    "reward_clipping": False,
}
OBS_TRANSFORM = {
    "kind": "rgb2gray-area",
    "gray": "ITU-R 601 luma (cv2 COLOR_RGB2GRAY)",
    "resize": "cv2 INTER_AREA",
}


class EnvError(ValueError):
    """The env id or spec cannot be used; the message says why and what works."""


def atari_game(env_id: str) -> str | None:
    """``ALE/MsPacman-v5`` -> ``ms_pacman``; None for non-ALE ids."""
    m = re.fullmatch(r"ALE/([A-Za-z0-9]+)-v\d+", env_id)
    if not m:
        return None
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", m.group(1)).lower()


def env_spec(env_id: str, screen_size: int = 84, **kwargs: Any) -> dict:
    """The JSON spec of an env: id, kind, every env/preprocessing kwarg, spaces and the obs transform."""
    game = atari_game(env_id)
    if game is not None:
        from ale_py import roms

        if roms.get_rom_path(game) is None:
            raise EnvError(f"{env_id}: ale-py has no ROM '{game}'; Atari ids look like ALE/Pong-v5")
        kw = {**ATARI_DEFAULTS, **kwargs}
        unknown = set(kw) - set(ATARI_DEFAULTS)
        if unknown:
            raise EnvError(f"unknown Atari option(s) {sorted(unknown)}; known: {sorted(ATARI_DEFAULTS)}")
        spec = {"id": env_id, "kind": "atari", "game": game, "kwargs": kw}
    else:
        if env_id not in gym.registry:
            _register_local_envs()
        if env_id not in gym.registry:
            raise EnvError(f"unknown env id '{env_id}'; use a registered gymnasium id or ALE/<Game>-v5")
        spec = {"id": env_id, "kind": "gymnasium", "kwargs": dict(kwargs)}
    spec["screen_size"] = int(screen_size)
    spec["obs_transform"] = OBS_TRANSFORM
    probe = make_env(spec, num_envs=1)
    spec["obs_shape"] = list(probe.obs_shape)
    spec["frame_shape"] = None if probe.frame_shape is None else list(probe.frame_shape)
    spec["n_actions"] = probe.n_actions
    spec["action_space"] = {"type": "Discrete", "n": probe.n_actions}
    spec["observation_space"] = {
        "obs": {"shape": list(probe.obs_shape), "dtype": "uint8", "low": 0, "high": 255},
        "frame": None if probe.frame_shape is None else {"shape": list(probe.frame_shape), "dtype": "uint8"},
    }
    probe.close()
    return spec


def same_env(a: dict, b: dict) -> bool:
    """Two specs describe the same data-generating env (what appending requires)."""
    keys = ("id", "kind", "kwargs", "screen_size", "obs_transform", "obs_shape", "frame_shape", "n_actions")
    return all(a.get(k) == b.get(k) for k in keys)


def env_difference(a: dict, b: dict) -> str:
    """Why two specs are not the same env, in a few words."""
    if a["id"] != b["id"]:
        return f"{a['id']} vs {b['id']}"
    keys = sorted(set(a.get("kwargs", {})) | set(b.get("kwargs", {})))
    diff = [
        f"{k}={a['kwargs'].get(k)} vs {b['kwargs'].get(k)}"
        for k in keys
        if a["kwargs"].get(k) != b["kwargs"].get(k)
    ]
    other = [k for k in ("screen_size", "obs_transform", "frame_shape", "n_actions") if a.get(k) != b.get(k)]
    return ", ".join(diff + [f"{k} differs" for k in other]) or "specs differ"


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


class FrameVectorEnv:
    """A vector env that yields agent observations and encoder frames, with next-step autoreset."""

    def __init__(self, spec: dict, env: Any, num_envs: int, frame_shape, n_actions: int):
        self.spec = spec
        self.env = env
        self.num_envs = num_envs
        self.screen_size = int(spec.get("screen_size", 84))
        self.frame_shape = frame_shape
        self.obs_shape = (self.screen_size, self.screen_size)
        self.n_actions = n_actions
        self._done = np.zeros(num_envs, bool)

    def _views(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.spec["kind"] == "atari":
            raw = raw[:, 0]  # stack_num=1
        frame = raw if raw.ndim == 4 else None
        return to_agent_obs(raw, self.screen_size), frame

    def reset(self, seed: int | None = None) -> Step:
        raw, _ = self.env.reset(seed=seed)
        obs, frame = self._views(np.asarray(raw))
        self._done[:] = False
        z = np.zeros(self.num_envs, bool)
        return Step(
            obs, frame, np.zeros(self.num_envs, np.float32), z, z.copy(), np.ones(self.num_envs, bool)
        )

    def send(self, actions: np.ndarray) -> None:
        a = np.asarray(actions, dtype=np.int64)
        if self.spec["kind"] == "atari":
            self.env.send(a)
        else:
            self._pending = self.env.step(a)

    def recv(self) -> Step:
        raw, reward, term, trunc, _ = self.env.recv() if self.spec["kind"] == "atari" else self._pending
        obs, frame = self._views(np.asarray(raw))
        is_first = self._done.copy()  # next-step autoreset: a done env returned its reset obs this step
        term, trunc = np.asarray(term, bool) & ~is_first, np.asarray(trunc, bool) & ~is_first
        self._done = term | trunc
        reward = np.where(is_first, 0.0, np.asarray(reward, np.float32)).astype(np.float32)
        return Step(obs, frame, reward, term, trunc, is_first)

    def step(self, actions: np.ndarray) -> Step:
        self.send(actions)
        return self.recv()

    def close(self) -> None:
        self.env.close()


def make_env(spec: dict | str, num_envs: int = 1, num_threads: int = 0) -> FrameVectorEnv:
    """Build the vector env a spec (or an env id, with default options) describes."""
    if isinstance(spec, str):
        spec = env_spec(spec)
    if spec["kind"] == "atari":
        from ale_py import ALEInterface, LoggerMode
        from ale_py.vector_env import AtariVectorEnv

        ALEInterface.setLoggerMode(LoggerMode.Error)  # the banner on stderr on every env creation
        threads = num_threads or min(num_envs, os.cpu_count() or 1)
        env = AtariVectorEnv(
            spec["game"],
            num_envs,
            num_threads=threads,
            img_height=210,
            img_width=160,
            grayscale=False,
            stack_num=1,
            autoreset_mode="NextStep",
            **spec["kwargs"],
        )
        return FrameVectorEnv(spec, env, num_envs, (210, 160, 3), int(env.single_action_space.n))
    _register_local_envs()
    env = gym.make_vec(spec["id"], num_envs=num_envs, vectorization_mode="sync", **spec["kwargs"])
    space = env.single_observation_space
    if not (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3)):
        raise EnvError(
            f"{spec['id']} observes {space}; collection needs image observations (H,W,3) or (H,W) uint8"
        )
    if not isinstance(env.single_action_space, gym.spaces.Discrete):
        raise EnvError(
            f"{spec['id']} has action space {env.single_action_space}; rise needs Discrete actions"
        )
    frame_shape = tuple(space.shape) if len(space.shape) == 3 else None
    return FrameVectorEnv(spec, env, num_envs, frame_shape, int(env.single_action_space.n))


def _register_local_envs() -> None:
    """Register rise's own envs (the memory probe) with gymnasium, once."""
    if "rise/CueMemory-v0" not in gym.registry:
        gym.register("rise/CueMemory-v0", entry_point="rise_data.probe_env:CueMemoryEnv")
