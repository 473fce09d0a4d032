"""Procgen (``procgen:coinrun``, any of the 16 games): procgen's own C++ vector env (gym3's ProcgenGym3Env).

Installed by ``make procgen`` (requirements/procgen.txt, ``--no-deps``; docs/envs.md says why). Options
(``--env-option``): ``distribution_mode`` easy|hard|extreme|memory, ``num_levels`` (0: unbounded),
``start_level``, ``use_sequential_levels`` and procgen's asset flags; the spec records all of them, defaults
included (procgen's own). Frames are procgen's 64x64 RGB; 15 actions in every game.

Procgen resets a finished env inside the step that ended it (the returned observation is already the next
level's first frame) and steps all envs together. rise's vector contract is next-step autoreset: the step
after a done returns the reset observation and ignores that env's action. The adapter keeps the contract
exactly: it snapshots a finished env's state (procgen's ``get_state``) and restores it after the next
step, so the ignored action never reaches the game. Procgen never shows an episode's last frame; the
terminal row holds the next level's first frame, as procgen's gym env gives it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from rise_data.envs.family import EnvFamily, register_family
from rise_data.envs.spec import EnvError, EnvSpec

INSTALL = "make procgen (.venv/bin/python -m pip install --no-deps -r requirements/procgen.txt)"
PREFIX = "procgen:"
PROCGEN_DEFAULTS: dict[str, Any] = {
    "distribution_mode": "hard",
    "num_levels": 0,
    "start_level": 0,
    "use_sequential_levels": False,
    "center_agent": True,
    "use_backgrounds": True,
    "use_monochrome_assets": False,
    "restrict_themes": False,
    "use_generated_assets": False,
    "paint_vel_info": False,
}
# easy and hard exist for every game, the others for these only: procgen's C++ asserts the game (its
# game.cpp) and the failed assert exits the whole process, so rise refuses them first.
MODE_GAMES: dict[str, tuple[str, ...] | None] = {
    "easy": None,
    "hard": None,
    "extreme": ("chaser", "dodgeball", "leaper", "starpilot"),
    "memory": ("caveflyer", "dodgeball", "heist", "jumper", "maze", "miner"),
}
FRAME_SHAPE = (64, 64, 3)
N_ACTIONS = 15  # procgen's fixed action combos (BaseProcgenEnv.get_combos), the same in every game
_STATE_BYTES = 2**20  # procgen's MAX_STATE_SIZE (a coinrun state is ~40 kB)


def _procgen():
    try:
        with warnings.catch_warnings():  # procgen's __init__ reads its version.txt without closing it
            warnings.simplefilter("ignore", ResourceWarning)
            import procgen
    except ImportError as e:
        raise EnvError(f"procgen envs need the procgen package ({e}); install it: {INSTALL}") from e
    return procgen


def check_options(game: str, kwargs: dict) -> dict:
    """Procgen's defaults overlaid with the user's options; one line naming a bad option and what works."""
    kw = {**PROCGEN_DEFAULTS, **kwargs}
    unknown = sorted(set(kw) - set(PROCGEN_DEFAULTS))
    if unknown:
        raise EnvError(f"unknown procgen option(s) {unknown}; known: {sorted(PROCGEN_DEFAULTS)}")
    mode = kw["distribution_mode"]
    if mode not in MODE_GAMES:
        raise EnvError(f"procgen distribution_mode '{mode}': use one of {list(MODE_GAMES)}")
    if MODE_GAMES[mode] is not None and game not in MODE_GAMES[mode]:
        raise EnvError(f"procgen:{game} has no '{mode}' mode; games with it: {', '.join(MODE_GAMES[mode])}")
    for key in ("num_levels", "start_level"):
        if not isinstance(kw[key], int) or isinstance(kw[key], bool) or kw[key] < 0:
            raise EnvError(f"procgen option {key}={kw[key]!r}: use an integer >= 0")
    flags = [k for k, v in kw.items() if isinstance(PROCGEN_DEFAULTS[k], bool) and not isinstance(v, bool)]
    if flags:
        raise EnvError(f"procgen option(s) {flags} take true or false")
    return kw


class ProcgenVector:
    """send/recv over one ``ProcgenGym3Env`` of N games, with next-step autoreset (module docstring).

    ``reset(seed)`` builds the env anew: procgen seeds its level generator only at construction
    (``rand_seed``; None: procgen draws one).
    """

    def __init__(self, game: str, num_envs: int, num_threads: int, options: dict):
        self.game, self.num_envs, self.num_threads, self.options = game, num_envs, num_threads, options
        self.env = None
        self._pending: dict[int, bytes] = {}  # env -> its state at the reset obs it must show next step
        self._first: dict[int, np.ndarray] = {}  # env -> that reset obs

    def reset(self, seed: int | None = None):
        self.close()
        self.env = _procgen().ProcgenGym3Env(
            num=self.num_envs,
            env_name=self.game,
            rand_seed=seed,
            num_threads=self.num_threads,
            **self.options,
        )
        self._buf = self.env._ffi.new(f"char[{_STATE_BYTES}]")
        self._pending, self._first = {}, {}
        _, ob, _ = self.env.observe()
        return ob["rgb"].copy(), {}

    def send(self, actions: np.ndarray) -> None:
        self.env.act(np.asarray(actions, dtype=np.int32))

    def recv(self):
        reward, ob, first = self.env.observe()
        obs, reward, done = ob["rgb"].copy(), np.array(reward, np.float32), np.array(first, bool)
        for i, state in self._pending.items():  # undo the step the contract says these envs did not take
            self.env.call_c_func("set_state", i, state, len(state))
            obs[i], reward[i], done[i] = self._first[i], 0.0, False
        self._pending, self._first = {}, {}
        for i in np.flatnonzero(done):
            n = self.env.call_c_func("get_state", int(i), self._buf, _STATE_BYTES)
            self._pending[int(i)] = bytes(self.env._ffi.buffer(self._buf, n))
            self._first[int(i)] = obs[i].copy()
        # procgen's done covers the level's own time limit too: one terminal flag, as its gym env reports
        return obs, reward, done, np.zeros(self.num_envs, bool), {}

    def step(self, actions: np.ndarray):
        self.send(actions)
        return self.recv()

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


class ProcgenFamily(EnvFamily):
    name = "procgen"

    def claims(self, env_id: str) -> bool:
        return env_id.startswith(PREFIX)

    def resolve(self, env_id: str, screen_size: int, wrappers: tuple[str, ...], kwargs: dict) -> EnvSpec:
        game = env_id[len(PREFIX) :]
        names = _procgen().env.ENV_NAMES
        if game not in names:
            raise EnvError(
                f"{env_id}: procgen has no game '{game}'; use procgen:<game>, one of {', '.join(names)}"
            )
        if wrappers:
            raise EnvError(f"procgen envs take no --wrapper (got {list(wrappers)}); use --env-option")
        return EnvSpec(
            id=env_id, family=self.name, kwargs=check_options(game, kwargs), screen_size=screen_size
        )

    def make_vector(self, spec: EnvSpec, num_envs: int, vectorization: str, num_threads: int):
        # procgen's C++ pool steps the games on its own threads: `vectorization` has nothing to choose here.
        # The options are checked again because a spec may come from a store: a mode the game lacks would
        # end the process in procgen's C++ instead of raising.
        game = spec.id[len(PREFIX) :]
        threads = num_threads or min(num_envs, os.cpu_count() or 1)
        env = ProcgenVector(game, num_envs, threads, check_options(game, spec.kwargs))
        return env, FRAME_SHAPE, N_ACTIONS


register_family(ProcgenFamily())
