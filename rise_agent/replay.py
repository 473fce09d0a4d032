"""Replay for RISE/BTR: an offline block read from a rise store and an online ring fed by vector envs.

Global row indices: the offline block's rows come first (``[0, N_off)``, the store's own row numbers),
the online ring after them (``[N_off, N_off + capacity)``). ``Batch.index`` uses them, and so does
:meth:`Replay.update_priorities`.

**Offline block.** Frames are never gathered from Zarr (random reads decompress whole chunks): the
store's ``obs`` array is copied once into an uncompressed ``.npy`` memmap under ``cache_dir`` and
sampled from there. Scalars live in RAM, embeddings on the device. Every non-last row is sampleable.

**Online ring.** ``capacity`` rows are split into one contiguous segment of ``L = capacity // num_envs``
rows per env; env ``e`` writes its rows in order into ``[e*L, (e+1)*L)``, wrapping around. Each row
keeps its position in its episode (``pos``), so frame stacks and context windows walk back with modular
arithmetic inside the segment, valid while ``pos`` allows. A row becomes sampleable once its n-step
target is written (``t + n`` written, or the episode ended earlier). Because rows are overwritten
oldest first, a live row's forward rows (``t .. t+m``) are always newer and live; what overwriting does
break is *look-back*: overwriting row ``x`` invalidates ``x`` itself and every later row of its
episode whose stack or context window reaches back to ``x`` (at most ``max(K, S) - 1`` rows). Those
rows get priority 0 at the moment ``x`` is overwritten, so no sampled transition ever reads
overwritten data.

Index math is :mod:`rise_agent.returns`: offline rows use it directly; online windows apply the same
functions to episode positions (``pos`` against an all-zero episode start) and map the result back
into the ring; online n-step targets apply :func:`~rise_agent.returns.nstep_targets` to the gathered
``n + 1``-row fragments ``t .. t+n`` of the sampled rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rise_agent.returns import (
    context_window,
    episode_ends,
    episode_starts,
    frame_stack_indices,
    nstep_targets,
)
from rise_agent.sumtree import SumTree

__all__ = ["Batch", "Replay", "ReplayConfig", "obs_cache", "obs_cache_path"]

_READ_BYTES = 64 << 20  # bytes per streamed read of the store (rounded to whole chunks)


@dataclass(frozen=True)
class ReplayConfig:
    """Replay size, n-step return, windows and prioritisation (defaults: BTR with RISE's K=80)."""

    capacity: int = 2**20  # online rows (ring), split evenly into one contiguous segment per env
    n_step: int = 3
    gamma: float = 0.997
    frame_stack: int = 4
    context_len: int = 80  # K; 0 = no context (plain BTR)
    prioritized: bool = True  # PER (sum tree) or uniform
    per_alpha: float = 0.2
    per_beta: float = 0.0  # IS exponent (BTR's final code effectively uses none); weights = (N*P)^-beta / max
    per_eps: float = 1e-6
    reward_clip: float | None = 1.0  # BTR clips rewards to [-1, 1]; stores keep raw rewards
    offline_fraction: float | None = None  # share of each batch from the offline block; None = by size

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.n_step < 1 or self.frame_stack < 1 or self.context_len < 0:
            raise ValueError("capacity, n_step and frame_stack must be >= 1 and context_len >= 0")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.per_alpha < 0 or self.per_beta < 0 or self.per_eps <= 0:
            raise ValueError("per_alpha and per_beta must be >= 0 and per_eps > 0")
        if self.reward_clip is not None and self.reward_clip <= 0:
            raise ValueError(f"reward_clip must be > 0 or None, got {self.reward_clip}")
        if self.offline_fraction is not None and not 0.0 <= self.offline_fraction <= 1.0:
            raise ValueError(f"offline_fraction must be in [0, 1] or None, got {self.offline_fraction}")

    @property
    def lookback(self) -> int:
        """Rows a transition's windows span back from its row, itself included: max(K, S)."""
        return max(self.frame_stack, self.context_len)


@dataclass
class Batch:
    """A sampled batch; every tensor is on the replay's device.

    ``frames`` uint8 (B, S, H, W), blank (zero) slots before the episode start. ``context`` float16
    (B, K, D): embeddings of rows t-K+1..t, current frame last, zero where ``mask`` (bool (B, K)) is
    False; both None when K = 0. ``returns``: n-step sum of clipped rewards; ``discount``: gamma^m, or 0
    when the episode terminated at t+m. ``next_*``: the same at row t+m. ``weights``: PER importance
    weights (ones when uniform). ``index``: global replay rows, for :meth:`Replay.update_priorities`.
    """

    frames: Tensor
    context: Tensor | None
    mask: Tensor | None
    action: Tensor
    returns: Tensor
    discount: Tensor
    next_frames: Tensor
    next_context: Tensor | None
    next_mask: Tensor | None
    weights: Tensor
    index: np.ndarray


def _clip(reward: np.ndarray, clip: float | None) -> np.ndarray:
    return reward if clip is None else np.clip(reward, -clip, clip)


WindowFn = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


class _Block:
    """Rows covered by one sum tree, with the sources their frames and embeddings are gathered from."""

    base: int  # global index of local row 0
    num_rows: int
    tree: SumTree
    ok: np.ndarray  # bool per row: sampleable now
    obs: np.ndarray
    emb: Tensor | None  # (num_rows + 1, D): the extra last row is zeros, what masked slots gather
    action: np.ndarray

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.ok))

    def targets(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def window(self, fn: WindowFn, rows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class _OfflineBlock(_Block):
    """A store's rows: static, every non-last row sampleable."""

    def __init__(
        self, config: ReplayConfig, obs: np.ndarray, emb: Tensor | None, cols: dict[str, np.ndarray]
    ):
        self.config = config
        self.obs, self.emb = obs, emb
        self.num_rows = int(cols["action"].shape[0])
        self.base = 0
        self.action = cols["action"].astype(np.int64)
        self.reward = _clip(cols["reward"].astype(np.float32), config.reward_clip)  # clipped copy
        self.is_last = cols["is_last"].astype(bool)
        self.terminated = cols["terminated"].astype(bool)
        self.starts = episode_starts(cols["is_first"])
        self.ends = episode_ends(self.is_last)
        self.ok = ~self.is_last
        self.tree = SumTree(self.num_rows)
        self.tree.set_all(self.ok.astype(np.float64))  # 1.0 = the initial max priority

    def targets(self, idx):
        c = self.config
        return nstep_targets(idx, self.reward, c.gamma, c.n_step, self.is_last, self.terminated, self.ends)

    def window(self, fn, rows, length):
        return fn(rows, self.starts, length)


class _OnlineBlock(_Block):
    """The ring: one segment of ``seg`` rows per env, written in order."""

    def __init__(self, config: ReplayConfig, num_envs: int, obs_shape, embed_dim: int, device):
        seg = config.capacity // num_envs
        need = config.lookback + config.n_step + 1
        if seg < need:
            raise ValueError(
                f"capacity {config.capacity} gives {seg} rows per env for {num_envs} envs; each env needs "
                f">= {need} (max(context_len, frame_stack) + n_step + 1): raise capacity"
            )
        self.config = config
        self.num_envs, self.seg = num_envs, seg
        self.num_rows = n = seg * num_envs
        self.base = 0
        self.device = device
        self.obs = np.zeros((n, *obs_shape), dtype=np.uint8)
        self.emb = (
            torch.zeros((n + 1, embed_dim), dtype=torch.float16, device=device)
            if config.context_len
            else None
        )
        self.action = np.zeros(n, np.int64)
        self.reward = np.zeros(n, np.float32)  # raw; clipped when a target is computed
        self.is_first = np.zeros(n, bool)
        self.is_last = np.zeros(n, bool)
        self.terminated = np.zeros(n, bool)
        self.pos = np.zeros(n, np.int64)
        self.ok = np.zeros(n, bool)
        self.written = np.zeros(num_envs, np.int64)  # rows each env has written since the start
        self.open = np.zeros(num_envs, bool)  # the env's newest row belongs to an unfinished episode
        self.tree = SumTree(n)

    # -- ring geometry ------------------------------------------------------------------------
    def slot(self, env: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Ring row of env ``env``'s ``u``-th written row."""
        return env * self.seg + np.mod(u, self.seg)

    def newest(self) -> np.ndarray:
        return self.slot(np.arange(self.num_envs), self.written - 1)

    # -- sampling -----------------------------------------------------------------------------
    def window(self, fn, rows, length):
        # returns.py's window on episode positions (episode start 0 for every position), mapped back
        pos = self.pos[rows]
        zero_start = np.broadcast_to(np.zeros(1, np.int64), (int(pos.max(initial=0)) + 1,))
        rel, valid = fn(pos, zero_start, length)
        return self._map(rows, rel - pos[:, None]), valid

    def _map(self, rows: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Rows ``offset`` (B, k) steps from ``rows`` (B,), wrapping inside each row's segment."""
        start = rows - rows % self.seg
        return start[:, None] + (rows[:, None] % self.seg + offset) % self.seg

    def targets(self, idx):
        c = self.config
        n = c.n_step
        fwd = self._map(idx, np.arange(n + 1)[None, :])  # (B, n+1): rows t..t+n
        # m = min(n, end - t) never reaches past the fragment: if the episode has not ended by t+n,
        # row t+n is written (that is what made t sampleable); rows after a real end are never read
        base = np.arange(len(idx), dtype=np.int64) * (n + 1)
        ret, nxt, disc = nstep_targets(
            base,
            _clip(self.reward[fwd], c.reward_clip).ravel(),
            c.gamma,
            n,
            self.is_last[fwd].ravel(),
            self.terminated[fwd].ravel(),
        )
        return ret, fwd[np.arange(len(idx)), nxt - base], disc

    # -- writing ------------------------------------------------------------------------------
    def _apply(self, off: list[np.ndarray], on: list[np.ndarray], value: float) -> None:
        """Rows in ``off`` stop, rows in ``on`` start being sampleable; one tree update for all."""
        off_rows = np.concatenate(off) if off else np.zeros(0, np.int64)
        on_rows = np.concatenate(on) if on else np.zeros(0, np.int64)
        self.ok[off_rows] = False
        self.ok[on_rows] = True
        values = np.concatenate([np.zeros(off_rows.size), np.full(on_rows.size, value)])
        self.tree.update(np.concatenate([off_rows, on_rows]), values)

    def write(self, envs, obs, emb, first, last, term, value: float) -> None:
        """Append one row to each env in ``envs`` (distinct), updating what is sampleable."""
        c = self.config
        u = self.written[envs]
        rows = self.slot(envs, u)
        off = [rows]  # the new row has no n-step target yet
        wrapped = u >= self.seg
        if wrapped.any():
            # overwriting row u-L: it and every later row whose windows reach back to it stop being valid
            j = np.arange(c.lookback)
            back = self.slot(envs[wrapped, None], u[wrapped, None] - self.seg + j)
            off.append(back[(j == 0) | (self.pos[back] >= j)])
        pos = np.where(first, 0, self.pos[self.slot(envs, u - 1)] + 1)
        self.obs[rows] = obs
        if self.emb is not None:
            self.emb[torch.from_numpy(rows).to(self.device)] = emb.to(self.device, torch.float16)
        self.action[rows] = 0
        self.reward[rows] = 0.0
        self.is_first[rows] = first
        self.is_last[rows] = last
        self.terminated[rows] = term & last
        self.pos[rows] = pos
        self.written[envs] += 1
        self.open[envs] = ~last
        # the row n steps back now has its n-step target; so do rows closer to an episode end
        has = pos >= c.n_step
        on = [self.slot(envs[has], u[has] - c.n_step), self._ended(envs[last], u[last], pos[last])]
        # no row is both: a row is complete n writes after it, invalidated >= L - lookback + 1 > n after
        self._apply(off, on, value)

    def close(self, envs: np.ndarray, value: float) -> None:
        """End the open episodes of ``envs`` at their newest row, as truncated (they did not terminate)."""
        if envs.size == 0:
            return
        u = self.written[envs] - 1
        rows = self.slot(envs, u)
        self.is_last[rows] = True
        self.terminated[rows] = False
        self.open[envs] = False
        self._apply([], [self._ended(envs, u, self.pos[rows])], value)

    def _ended(self, envs, u_last, pos_last) -> np.ndarray:
        """Rows fewer than n steps before an episode's last row: their (shorter) target is complete now."""
        j = np.arange(1, self.config.n_step)
        back = self.slot(envs[:, None], u_last[:, None] - j)
        return back[pos_last[:, None] >= j]


def obs_cache_path(store, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the uncompressed ``obs`` cache of ``store`` lives: named by a fingerprint of the store.

    The fingerprint hashes the absolute path, the committed rows, the store's creation time and the
    number of history entries, so it changes whenever the store is recreated or grows.
    """
    root = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    path = store.path if "://" in str(store.path) else os.path.abspath(store.path)
    meta = store.meta
    key = json.dumps([path, store.rows, meta.get("created"), len(meta.get("history", []))])
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", Path(str(path).rstrip("/")).name) or "store"
    return root / f"{name}-{_sha(path)[:12]}-{_sha(key)[:16]}.npy"


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rise" / "obs"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def obs_cache(store, cache_dir: str | os.PathLike | None = None) -> np.memmap:
    """The store's committed ``obs`` rows as a read-only memmap, building the cache file if needed.

    Built once by streaming chunk-aligned slices into a temp file that is renamed into place when
    complete, so an interrupted build never leaves a partial cache under the final name. A rebuilt
    cache (the store grew) replaces the older caches of the same store path.
    """
    final = obs_cache_path(store, cache_dir)
    shape = (store.rows, *store.array("obs").shape[1:])
    if final.exists():
        try:
            mm = np.load(final, mmap_mode="r")
            if mm.shape == shape and mm.dtype == np.uint8:
                return mm
        except (ValueError, OSError):
            pass  # unreadable: rebuild below
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = final.name.rsplit("-", 1)[0]
    _remove_dead_temps(final.parent, prefix)
    tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    try:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        chunk = store.array("obs").chunks[0]
        step = chunk * max(1, _READ_BYTES // max(1, chunk * int(np.prod(shape[1:]))))
        for s in range(0, store.rows, step):
            mm[s : s + step] = store.read("obs", s, s + step)
        mm.flush()
        del mm
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for old in final.parent.glob(f"{prefix}-*.npy"):
        if old != final:  # an older version of this store; open memmaps of it stay valid on POSIX
            old.unlink(missing_ok=True)
    return np.load(final, mmap_mode="r")


def _remove_dead_temps(folder: Path, prefix: str) -> None:
    """Delete temp files of this store left by builds whose process no longer exists (a kill)."""
    for tmp in folder.glob(f"{prefix}-*.npy.*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[1])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, someone else's


def _load_embeddings(store, name: str, device: torch.device) -> Tensor:
    arr = store.embedding(name)
    meta = store.embedding_meta(name)
    done = int(meta.get("rows_done", 0))
    if done < store.rows:
        encoder = meta.get("encoder", name)
        hint = f"--encoder {encoder}" + ("" if encoder.replace(":", ".") == name else f" --name {name}")
        raise ValueError(
            f"embeddings '{name}' of {store.path} cover {done} of {store.rows} rows; "
            f"run rise-data encode {store.path} {hint} to finish"
        )
    rows, dim = store.rows, int(arr.shape[1])
    out = torch.empty((rows + 1, dim), dtype=torch.float16, device=device)
    out[rows] = 0  # the zero row masked window slots point at
    chunk = arr.chunks[0]
    step = chunk * max(1, _READ_BYTES // max(1, chunk * dim * arr.dtype.itemsize))
    for s in range(0, rows, step):
        e = min(rows, s + step)
        out[s:e] = torch.from_numpy(np.asarray(arr[s:e]).astype(np.float16, copy=False)).to(device)
    return out


class Replay:
    """Offline (store) + online (ring) replay with vectorised PER or uniform sampling. See module doc."""

    def __init__(
        self,
        config: ReplayConfig,
        obs_shape: tuple[int, int] = (84, 84),
        embed_dim: int = 512,
        num_envs: int = 0,
        device: str | torch.device = "cpu",
    ):
        self.config = config
        self.obs_shape = tuple(int(x) for x in obs_shape)
        self.embed_dim = int(embed_dim) if config.context_len else 0
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self._max_priority = 1.0
        self._offline: _OfflineBlock | None = None
        self._online = (
            _OnlineBlock(config, self.num_envs, self.obs_shape, self.embed_dim, self.device)
            if self.num_envs > 0
            else None
        )

    @classmethod
    def from_store(
        cls,
        store_path: str | os.PathLike,
        embedding: str | None,
        config: ReplayConfig,
        num_envs: int = 0,
        device: str | torch.device = "cpu",
        cache_dir: str | os.PathLike | None = None,
    ) -> Replay:
        """A replay whose offline block is the store at ``store_path`` (plus an online ring if ``num_envs``).

        ``embedding`` names the store's embeddings array the context windows read (required when
        ``context_len > 0``, ignored otherwise); it must be fully encoded.
        """
        from rise_data.store import open_store

        store = open_store(store_path)
        if store.rows == 0:
            raise ValueError(f"{store.path} holds no rows; collect some first")
        device = torch.device(device)
        emb = None
        if config.context_len:
            if embedding is None:
                have = ", ".join(store.embedding_names()) or "none; run rise-data encode"
                raise ValueError(
                    f"context_len={config.context_len} needs embeddings: pass one of {store.path}'s ({have})"
                )
            emb = _load_embeddings(store, embedding, device)
        replay = cls(
            config,
            tuple(store.env["obs_shape"]),
            embed_dim=emb.shape[1] if emb is not None else 0,
            num_envs=num_envs,
            device=device,
        )
        cols = {k: store.read(k) for k in ("action", "reward", "is_first", "is_last", "terminated")}
        replay._offline = _OfflineBlock(config, obs_cache(store, cache_dir), emb, cols)
        if replay._online is not None:
            replay._online.base = replay._offline.num_rows
        return replay

    # -- online writes ----------------------------------------------------------------------------
    def _require_online(self) -> _OnlineBlock:
        if self._online is None:
            raise RuntimeError("this replay has no online block (num_envs=0)")
        return self._online

    def _new_priority(self) -> float:
        return self._max_priority if self.config.prioritized else 1.0

    def _check_step(self, obs: np.ndarray, emb: Tensor | None) -> None:
        E = self.num_envs
        if obs.shape != (E, *self.obs_shape) or obs.dtype != np.uint8:
            raise ValueError(f"obs must be uint8 {(E, *self.obs_shape)}, got {obs.dtype} {obs.shape}")
        if self.config.context_len and (emb is None or tuple(emb.shape) != (E, self.embed_dim)):
            got = None if emb is None else tuple(emb.shape)
            raise ValueError(f"context_len > 0 needs emb of shape {(E, self.embed_dim)}, got {got}")

    def add_first(self, step_obs: np.ndarray, emb: Tensor | None) -> None:
        """Start one new episode per env with the observations of ``env.reset()``.

        An env whose previous episode is still open has it closed as truncated at its newest row.
        """
        on = self._require_online()
        obs = np.asarray(step_obs)
        self._check_step(obs, emb)
        envs = np.arange(self.num_envs)
        value = self._new_priority()
        on.close(envs[on.open], value)
        z = np.zeros(self.num_envs, bool)
        on.write(envs, obs, emb, np.ones(self.num_envs, bool), z, z, value)

    def add(self, actions: np.ndarray, step, emb: Tensor | None) -> None:
        """Record one vector step: ``actions`` were sent at each env's newest row and ``step`` came back.

        Follows next-step autoreset: where ``step.is_first[i]`` the observation starts a new episode
        and ``actions[i]`` was ignored (the previous episode ended on the step before).
        """
        on = self._require_online()
        if not np.all(on.written > 0):
            raise RuntimeError("call add_first with the observations of env.reset() before add")
        obs = np.asarray(step.obs)
        self._check_step(obs, emb)
        first = np.asarray(step.is_first, bool)
        cont = ~first
        envs = np.arange(self.num_envs)
        prev = on.newest()
        bad = cont & on.is_last[prev]
        if bad.any():
            raise ValueError(
                f"env(s) {np.flatnonzero(bad).tolist()} continued after their episode ended; with "
                "next-step autoreset the step after a done must have is_first set"
            )
        on.action[prev[cont]] = np.asarray(actions, np.int64)[cont]
        on.reward[prev[cont]] = np.asarray(step.reward, np.float32)[cont]
        value = self._new_priority()
        on.close(envs[first & on.open], value)  # a new episode without a done: cut the old one
        term = np.asarray(step.terminated, bool) & cont
        last = (term | np.asarray(step.truncated, bool)) & cont
        on.write(envs, obs, emb, first, last, term, value)

    # -- acting -----------------------------------------------------------------------------------
    def _newest(self) -> np.ndarray:
        on = self._require_online()
        if not np.all(on.written > 0):
            raise RuntimeError("no rows yet: call add_first first")
        return on.newest()

    def current_frames(self) -> Tensor:
        """uint8 (E, S, H, W): each env's frame stack at its newest row, as in training batches."""
        rows = self._newest()
        on = self._online
        srows, valid = on.window(frame_stack_indices, rows, self.config.frame_stack)
        frames = on.obs[srows]
        frames[~valid] = 0
        return torch.from_numpy(frames).to(self.device)

    def current_context(self) -> tuple[Tensor | None, Tensor | None]:
        """float16 (E, K, D) windows and bool (E, K) masks at each env's newest row; (None, None) if K=0."""
        if not self.config.context_len:
            return None, None
        rows = self._newest()
        crows, mask = self._online.window(context_window, rows, self.config.context_len)
        on = self._online
        rows = torch.from_numpy(np.where(mask, crows, on.num_rows)).to(self.device)
        return on.emb[rows], torch.from_numpy(mask).to(self.device)

    # -- sampling ---------------------------------------------------------------------------------
    def _blocks(self) -> list[_Block]:
        return [b for b in (self._offline, self._online) if b is not None]

    def __len__(self) -> int:
        """Sampleable transitions (offline + online)."""
        return sum(b.count for b in self._blocks())

    def _shares(self) -> list[float]:
        """Expected share of each block (offline, online) in a batch."""
        counts = [b.count for b in self._blocks()]
        if sum(counts) == 0:
            raise ValueError("the replay holds no sampleable transitions yet")
        if len(counts) == 1 or counts[1] == 0:
            return [1.0, 0.0][: len(counts)]
        if counts[0] == 0:
            return [0.0, 1.0]
        f = self.config.offline_fraction
        f = counts[0] / sum(counts) if f is None else f
        return [f, 1.0 - f]

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """A batch of ``batch_size`` transitions, split between blocks and drawn stratified from each tree."""
        c = self.config
        B, S, K = int(batch_size), c.frame_stack, c.context_len
        blocks, shares = self._blocks(), self._shares()
        sizes = [B]
        if len(blocks) == 2:
            x = B * shares[0]  # stochastic rounding keeps the expected split exact
            k = math.floor(x) + int(rng.random() < x - math.floor(x))
            sizes = [k, B - k]
        total_n = len(self)
        dev = self.device
        # [current, next]; pinned on CUDA so the upload is asynchronous (the caching host allocator
        # does not reuse the buffer before the copy has finished)
        frames_t = torch.empty((2, B, S, *self.obs_shape), dtype=torch.uint8, pin_memory=dev.type == "cuda")
        frames = frames_t.numpy()
        action = np.empty(B, np.int64)
        ret, disc, weights = np.empty(B, np.float32), np.empty(B, np.float32), np.ones(B, np.float64)
        index = np.empty(B, np.int64)
        context = mask = None
        if K:
            context = torch.empty((2, B, K, self.embed_dim), dtype=torch.float16, device=dev)
            mask_np = np.empty((2, B, K), dtype=bool)
        a = 0
        for block, share, nb in zip(blocks, shares, sizes, strict=True):
            if nb == 0:
                continue
            sl = slice(a, a + nb)
            idx = block.tree.stratified(nb, rng)
            r, nxt, d = block.targets(idx)
            both = np.concatenate([idx, nxt])
            srows, valid = block.window(frame_stack_indices, both, S)
            srows, valid = srows.reshape(2, nb, S), valid.reshape(2, nb, S)
            for i in range(2):
                np.take(block.obs, srows[i], axis=0, out=frames[i, sl], mode="clip")
                frames[i, sl][~valid[i]] = 0
            if K:
                crows, cmask = block.window(context_window, both, K)
                mask_np[:, sl] = cmask.reshape(2, nb, K)
                # masked slots gather the zero row: no masking pass over (B, K, D) afterwards
                crows = np.where(cmask, crows, block.num_rows).reshape(2, nb * K)
                crows = torch.from_numpy(crows).to(dev)
                for i in range(2):
                    out = context[i, sl].view(nb * K, self.embed_dim)
                    torch.index_select(block.emb, 0, crows[i], out=out)
            action[sl], ret[sl], disc[sl] = block.action[idx], r, d
            index[sl] = block.base + idx
            if c.prioritized:
                prob = share * block.tree[idx] / block.tree.total
                weights[sl] = (total_n * prob) ** -c.per_beta
            a += nb
        weights /= weights.max()
        frames_t = frames_t.to(dev, non_blocking=True)
        if K:
            mask = torch.from_numpy(mask_np).to(dev)
        return Batch(
            frames=frames_t[0],
            context=None if context is None else context[0],
            mask=None if mask is None else mask[0],
            action=torch.from_numpy(action).to(dev),
            returns=torch.from_numpy(ret).to(dev),
            discount=torch.from_numpy(disc).to(dev),
            next_frames=frames_t[1],
            next_context=None if context is None else context[1],
            next_mask=None if mask is None else mask[1],
            weights=torch.from_numpy(weights.astype(np.float32)).to(dev),
            index=index,
        )

    def update_priorities(self, index: np.ndarray, td: np.ndarray) -> None:
        """Set the priorities of sampled rows to ``(|td| + eps) ** alpha`` (no-op when uniform).

        Rows that stopped being sampleable since they were sampled (overwritten) are skipped.
        """
        c = self.config
        if not c.prioritized:
            return
        index = np.asarray(index, np.int64).ravel()
        td = np.abs(np.asarray(td.detach().cpu() if isinstance(td, Tensor) else td, np.float64)).ravel()
        if index.shape != td.shape:
            raise ValueError(f"index {index.shape} and td {td.shape} differ in shape")
        prio = (td + c.per_eps) ** c.per_alpha
        if prio.size:
            self._max_priority = max(self._max_priority, float(prio.max()))
        for block in self._blocks():
            local = index - block.base
            sel = (local >= 0) & (local < block.num_rows)
            sel[sel] = block.ok[local[sel]]
            block.tree.update(local[sel], prio[sel])

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Online ring, priorities and counters as tensors/ints (loadable with ``weights_only=True``).

        The big arrays are views of the live ring, not copies: save it before the next ``add``.
        """
        sd: dict = {
            "version": 1,
            "max_priority": torch.tensor(self._max_priority, dtype=torch.float64),
            "offline_rows": 0 if self._offline is None else self._offline.num_rows,
            "num_envs": self.num_envs,
        }
        if self._offline is not None:
            sd["offline_priorities"] = torch.from_numpy(self._offline.tree.values.copy())
        on = self._online
        if on is not None:
            sd["segment"] = on.seg
            for name in ("obs", "action", "reward", "is_first", "is_last", "terminated", "pos", "ok"):
                sd[name] = torch.from_numpy(getattr(on, name))
            sd["written"] = torch.from_numpy(on.written)
            sd["open"] = torch.from_numpy(on.open)
            sd["priorities"] = torch.from_numpy(on.tree.values.copy())
            if on.emb is not None:
                sd["emb"] = on.emb[: on.num_rows].cpu()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        """Restore :meth:`state_dict` into a replay built with the same config, store and num_envs."""
        off_rows = 0 if self._offline is None else self._offline.num_rows
        on = self._online
        if (
            sd.get("version") != 1
            or sd["offline_rows"] != off_rows
            or sd["num_envs"] != self.num_envs
            or (on is not None and sd["segment"] != on.seg)
        ):
            raise ValueError(
                "replay state does not fit this replay (different store rows, num_envs or capacity)"
            )
        self._max_priority = float(sd["max_priority"])
        if self._offline is not None:
            self._offline.tree.set_all(sd["offline_priorities"].numpy())
        if on is None:
            return
        for name in ("obs", "action", "reward", "is_first", "is_last", "terminated", "pos", "ok"):
            np.copyto(getattr(on, name), sd[name].numpy())
        np.copyto(on.written, sd["written"].numpy())
        np.copyto(on.open, sd["open"].numpy())
        on.tree.set_all(sd["priorities"].numpy())
        if on.emb is not None:
            on.emb[: on.num_rows].copy_(sd["emb"].to(on.emb.device))
