"""Double-buffered acting: the envs split into groups, each its own vector env and Actor.

While group 0 steps in its vector env the actor thread picks group 1's actions, and the other way round,
so env stepping overlaps inference: acting wall ~ max(raw stepping, inference), not their sum.
:class:`GroupedVectorEnv` looks like one :class:`~rise_data.envs.FrameVectorEnv` of all envs to everyone
else (the Rollout's bookkeeping, the replay): ``recv`` returns the whole vector step once every group's
part is in, ``send`` starts the groups whose actions were not already sent part by part.
"""

from __future__ import annotations

import os

import numpy as np

from rise_agent.acting.config import ActingConfig
from rise_data.envs import FrameVectorEnv, Step, make_env
from rise_data.errors import UserError

__all__ = ["GroupedVectorEnv", "acting_env", "ale_threads", "group_slices"]


def group_slices(num_envs: int, groups: int) -> list[slice]:
    """Contiguous env ranges of ``groups`` near-equal groups (the first ones one env larger)."""
    if not 1 <= groups <= num_envs:
        raise UserError(f"{groups} env groups for {num_envs} envs: use 1 to {num_envs} groups")
    sizes = [num_envs // groups + (g < num_envs % groups) for g in range(groups)]
    ends = np.cumsum([0, *sizes])
    return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:], strict=True)]


def _cat(parts: list[Step]) -> Step:
    frame = None if parts[0].frame is None else np.concatenate([p.frame for p in parts])
    return Step(
        np.concatenate([p.obs for p in parts]),
        frame,
        *(
            np.concatenate([getattr(p, k) for p in parts])
            for k in ("reward", "terminated", "truncated", "is_first")
        ),
    )


class GroupedVectorEnv:
    """Several FrameVectorEnvs of one spec as one env of all their envs, steppable group by group."""

    def __init__(self, envs: list[FrameVectorEnv]):
        self.envs = envs
        self.slices = group_slices(sum(e.num_envs for e in envs), len(envs))
        self.num_envs = self.slices[-1].stop
        self.obs_shape, self.frame_shape = envs[0].obs_shape, envs[0].frame_shape
        self.n_actions, self.spec = envs[0].n_actions, envs[0].spec
        self._sent = [False] * len(envs)  # group g's actions for the coming step are out
        self._got: list[Step | None] = [None] * len(envs)

    def reset(self, seed: int | None = None) -> Step:
        # env i gets the seed it has in one vector env of all envs (gymnasium seeds env i with seed + i)
        seeds = [None if seed is None else seed + sl.start for sl in self.slices]
        steps = [e.reset(seed=sd) for e, sd in zip(self.envs, seeds, strict=True)]
        self._sent, self._got = [False] * len(self.envs), [None] * len(self.envs)
        return _cat(steps)

    def send_part(self, g: int, actions: np.ndarray) -> None:
        """Start group ``g`` on its actions (``actions`` for its envs only)."""
        self.envs[g].send(actions)
        self._sent[g] = True

    def recv_part(self, g: int) -> Step:
        """Wait for group ``g``'s part of the step its last send led to (kept for :meth:`recv`)."""
        got = self._got[g]
        if got is None:
            got = self._got[g] = self.envs[g].recv()
            self._sent[g] = False
        return got

    def send(self, actions: np.ndarray) -> None:
        for g, sl in enumerate(self.slices):
            if not self._sent[g]:
                self.send_part(g, np.asarray(actions)[sl])

    def recv(self) -> Step:
        parts = [self.recv_part(g) for g in range(len(self.envs))]
        self._got = [None] * len(self.envs)
        return _cat(parts)

    def step(self, actions: np.ndarray) -> Step:
        self.send(actions)
        return self.recv()

    def close(self) -> None:
        for e in self.envs:
            e.close()


RESERVED_CORES = 2  # the learner thread and the actor thread (inference, embedding, bookkeeping)


def ale_threads(num_envs: int, cores: int | None = None) -> int:
    """Emulator threads for online training: one per env, leaving ``RESERVED_CORES`` to the learner and
    the actor (ale-py's default takes every core, so emulation competes with the learner's step)."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(num_envs, cores - RESERVED_CORES))


def acting_env(spec, num_envs: int, config: ActingConfig, num_threads: int = 0):
    """The env the actor thread steps: one vector env, or ``env_groups`` of them, with the emulator
    threads of :func:`ale_threads` (``num_threads`` overrides; split between the groups)."""
    threads = num_threads or ale_threads(num_envs)
    if config.env_groups == 1:
        return make_env(spec, num_envs=num_envs, num_threads=threads)
    slices = group_slices(num_envs, config.env_groups)
    each = max(1, threads // config.env_groups)
    return GroupedVectorEnv([make_env(spec, num_envs=s.stop - s.start, num_threads=each) for s in slices])
