"""The online ring: per-env segments written in order by vector envs, in RAM or in memory-mapped files.

``capacity`` rows are split into one contiguous segment of ``L = capacity // num_envs`` rows per env;
env ``e`` writes its rows in order into ``[e*L, (e+1)*L)``, wrapping around. Each row keeps its position
in its episode (``pos``), so frame stacks and context windows walk back with modular arithmetic inside
the segment, valid while ``pos`` allows. A row becomes sampleable once its n-step target is written
(``t + n`` written, or the episode ended earlier). Because rows are overwritten oldest first, a live
row's forward rows (``t .. t+m``) are always newer and live; what overwriting does break is
*look-back*: overwriting row ``x`` invalidates ``x`` itself and every later row of its episode whose
stack or context window reaches back to ``x`` (at most ``max(K, S) - 1`` rows). Those rows leave the
sampler at the moment ``x`` is overwritten, so no sampled transition ever reads overwritten data.

**One writer**: :meth:`OnlineRing.add_first` and :meth:`OnlineRing.add` hold every write rule (episode
flags, cuts, the rows a write makes or stops being sampleable, the restart after a checkpoint); nothing
else writes the ring's rows.

**Files** (``ring_dir``): every per-row array is a ``.npy`` memmap in the folder, next to ``written.npy``
(rows each env has written, updated on every write) and ``ring.json`` (geometry and a generation id,
minted by the first write of a fresh ring). A checkpoint holds only where each env's rows end, the open
episodes and the sampler's leaf weights. Rows written after that checkpoint (a run killed later) have
overwritten the checkpoint's oldest rows; loading the checkpoint compares its ends with ``written.npy``
and drops those rows and the rows whose windows reach them, so a resumed run continues with the
checkpoint's replay minus at most what was overwritten since. Embeddings that live on the device (a
GPU; ``map_cpu_embeddings=False``) are mirrored into ``emb.npy`` at each checkpoint, not on every
write, so a step never waits for a device->host copy; that is enough for the same reason.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rise_agent.replay.config import WindowedConfig
from rise_agent.replay.samplers import make_sampler
from rise_agent.replay.sources import Source, clip_reward
from rise_data.envs.vector import Step
from rise_data.errors import UserError
from rise_data.windows import nstep_targets, window_offsets

__all__ = ["OnlineRing"]

# per-row arrays besides obs and emb; the ring's write state, saved in RAM mode and mapped in file mode
_ROW_FIELDS = {
    "action": np.int64,
    "reward": np.float32,  # raw; clipped when a target is computed
    "is_first": np.bool_,
    "is_last": np.bool_,
    "terminated": np.bool_,
    "pos": np.int64,
}
_EMPTY = np.zeros(0, np.int64)


class _RingFiles:
    """The ring's arrays as ``.npy`` memmaps in one folder, reused when ``ring.json`` matches the geometry."""

    def __init__(self, folder: str | os.PathLike, geometry: dict, specs: dict[str, tuple[tuple, type]]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.meta_path = self.folder / "ring.json"
        self.id: str | None = None  # the generation, from ring.json or minted by the first write
        arrays = self._reopen(geometry, specs)
        if arrays is None:
            self.meta_path.unlink(missing_ok=True)  # files being replaced are no ring until the first write
            arrays = {
                name: np.lib.format.open_memmap(self.folder / f"{name}.npy", "w+", dtype, shape)
                for name, (shape, dtype) in specs.items()
            }
        self.arrays: dict[str, np.memmap] = arrays
        self.geometry = geometry
        self.written = self.arrays["written"]
        self.written_at_open = np.array(self.written)  # where the last run's rows end

    def _reopen(self, geometry: dict, specs: dict[str, tuple[tuple, type]]) -> dict[str, np.memmap] | None:
        try:
            meta = json.loads(self.meta_path.read_text())
            if meta.get("geometry") != geometry:
                return None
            arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r+") for name in specs}
        except (OSError, ValueError):
            return None
        if any(arrays[n].shape != s or arrays[n].dtype != np.dtype(d) for n, (s, d) in specs.items()):
            return None
        self.id = meta["id"]
        return arrays

    def new_generation(self) -> None:
        """A fresh ring starts here: no checkpoint of an earlier run fits the files from now on."""
        self.written[:] = 0
        self.id = secrets.token_hex(8)
        tmp = self.meta_path.with_name(f"ring.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"geometry": self.geometry, "id": self.id}))
        os.replace(tmp, self.meta_path)

    def flush(self) -> None:
        for arr in self.arrays.values():
            arr.flush()


class OnlineRing(Source):
    """The ring: one segment of ``seg`` rows per env, written in order (see module doc)."""

    name = "online"
    map_cpu_embeddings = True  # on CPU, gather straight from the mapped file (False: a copy, as on GPUs)
    # the _ROW_FIELDS arrays, set from them in __init__
    action: np.ndarray
    reward: np.ndarray
    is_first: np.ndarray
    is_last: np.ndarray
    terminated: np.ndarray
    pos: np.ndarray

    def __init__(
        self,
        config: WindowedConfig,
        num_envs: int,
        obs_shape: tuple[int, ...],
        embed_dim: int,
        device: torch.device,
        ring_dir: str | os.PathLike | None = None,
        base: int = 0,
    ):
        seg = config.capacity // num_envs
        need = config.lookback + config.n_step + 1
        if seg < need:
            raise UserError(
                f"capacity {config.capacity} gives {seg} rows per env for {num_envs} envs; each env needs "
                f">= {need} (max(context_len, frame_stack) + n_step + 1): raise capacity"
            )
        self.config = config
        self.base = base  # global index of row 0 (after a store's rows)
        self.num_envs, self.seg = num_envs, seg
        self.obs_shape, self.embed_dim = tuple(obs_shape), embed_dim
        self.num_rows = n = seg * num_envs
        self.device = device
        specs = {"obs": ((n, *obs_shape), np.uint8), **{k: ((n,), t) for k, t in _ROW_FIELDS.items()}}
        if config.context_len:
            specs["emb"] = ((n + 1, embed_dim), np.float16)
        self._files: _RingFiles | None = None
        arrays: Mapping[str, np.ndarray]
        if ring_dir is None:
            arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype) in specs.items()}
        else:
            geometry = {
                "num_envs": num_envs,
                "segment": seg,
                "obs_shape": list(obs_shape),
                "embed": embed_dim,
            }
            specs["written"] = ((num_envs,), np.int64)
            self._files = _RingFiles(ring_dir, geometry, specs)
            arrays = self._files.arrays
        self.obs: np.ndarray | Tensor = arrays["obs"]
        self._obs_file: np.ndarray | None = None
        if config.obs_on_device:  # the frames where the learner reads them; a file is mirrored at checkpoints
            self._obs_file = self.obs if self._files is not None else None
            self.obs = torch.from_numpy(np.asarray(self.obs)).to(device)
        for name in _ROW_FIELDS:
            setattr(self, name, arrays[name])
        self.emb, self._emb_file = self._embeddings(arrays.get("emb"))
        self._dirty = np.zeros(n, bool)  # rows the next checkpoint mirrors into the files (if any)
        self.ok = np.zeros(n, bool)
        self.written = np.zeros(num_envs, np.int64)  # rows each env has written since the start
        self.open = np.zeros(num_envs, bool)  # the env's newest row belongs to an unfinished episode
        self.sampler = make_sampler(config, n)
        self.started = False  # a row was written or a checkpoint loaded
        self._need_first = False  # after a checkpoint is loaded, episodes restart with add_first

    def _embeddings(self, arr: np.ndarray | None) -> tuple[Tensor | None, np.ndarray | None]:
        """The tensor windows gather from, and the file rows mirrored into when that tensor is not the file."""
        if arr is None:
            return None, None
        if self._files is not None and self.device.type == "cpu" and self.map_cpu_embeddings:
            return torch.from_numpy(arr), None  # the mapped file itself
        emb = torch.zeros(arr.shape, dtype=torch.float16, device=self.device)
        return emb, (arr if self._files is not None else None)

    @property
    def storage(self) -> str:
        return "RAM" if self._files is None else f"files in {self._files.folder}"

    # -- ring geometry ------------------------------------------------------------------------
    def slot(self, env: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Ring row of env ``env``'s ``u``-th written row."""
        return env * self.seg + np.mod(u, self.seg)

    def newest(self) -> np.ndarray:
        return self.slot(np.arange(self.num_envs), self.written - 1)

    # -- sampling -----------------------------------------------------------------------------
    def window(self, rows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        offsets, valid = window_offsets(self.pos[rows], length)  # each row knows its episode position
        return self._map(rows, offsets), valid

    def _map(self, rows: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Rows ``offset`` (B, k) steps from ``rows`` (B,), wrapping inside each row's segment."""
        start = rows - rows % self.seg
        return start[:, None] + (rows[:, None] % self.seg + offset) % self.seg

    def targets(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.config
        n = c.n_step
        fwd = self._map(idx, np.arange(n + 1)[None, :])  # (B, n+1): rows t..t+n
        # m = min(n, end - t) never reaches past the fragment: if the episode has not ended by t+n,
        # row t+n is written (that is what made t sampleable); rows after a real end are never read
        base = np.arange(len(idx), dtype=np.int64) * (n + 1)
        ret, nxt, disc = nstep_targets(
            base,
            clip_reward(self.reward[fwd], c.reward_clip).ravel(),
            c.gamma,
            n,
            self.is_last[fwd].ravel(),
            self.terminated[fwd].ravel(),
        )
        return ret, fwd[np.arange(len(idx)), nxt - base], disc

    # -- writing: the one writer of the ring's rows ----------------------------------------------
    def add_first(self, obs: np.ndarray, emb: Tensor | None) -> None:
        """Start one new episode per env with the observations of ``env.reset()``; an env's open
        episode is closed as truncated at its newest row."""
        self._check_step(obs, emb)
        envs = np.arange(self.num_envs)
        self._close(envs[self.open])
        z = np.zeros(self.num_envs, bool)
        self._write(envs, obs, emb, np.ones(self.num_envs, bool), z, z)
        self._need_first = False

    def add(self, actions: np.ndarray, step: Step, emb: Tensor | None) -> None:
        """One vector step (next-step autoreset): ``actions`` were sent at each env's newest row."""
        if self._need_first or not np.all(self.written > 0):
            raise RuntimeError("call add_first with the observations of env.reset() before add")
        obs = np.asarray(step.obs)
        self._check_step(obs, emb)
        first = np.asarray(step.is_first, bool)
        cont = ~first
        envs = np.arange(self.num_envs)
        prev = self.newest()
        bad = cont & self.is_last[prev]
        if bad.any():
            raise ValueError(
                f"env(s) {np.flatnonzero(bad).tolist()} continued after their episode ended; with "
                "next-step autoreset the step after a done must have is_first set"
            )
        self.action[prev[cont]] = np.asarray(actions, np.int64)[cont]
        self.reward[prev[cont]] = np.asarray(step.reward, np.float32)[cont]
        self._close(envs[first & self.open])  # a new episode without a done: cut the old one
        term = np.asarray(step.terminated, bool) & cont
        last = (term | np.asarray(step.truncated, bool)) & cont
        self._write(envs, obs, emb, first, last, term)

    def _check_step(self, obs: np.ndarray, emb: Tensor | None) -> None:
        E = self.num_envs
        if obs.shape != (E, *self.obs_shape) or obs.dtype != np.uint8:
            raise ValueError(f"obs must be uint8 {(E, *self.obs_shape)}, got {obs.dtype} {obs.shape}")
        if self.config.context_len and (emb is None or tuple(emb.shape) != (E, self.embed_dim)):
            got = None if emb is None else tuple(emb.shape)
            raise ValueError(f"context_len > 0 needs emb of shape {(E, self.embed_dim)}, got {got}")

    def _apply(self, off: list[np.ndarray], on: list[np.ndarray]) -> None:
        """Rows in ``off`` stop, rows in ``on`` start being sampleable; one sampler update for all."""
        off_rows = np.concatenate(off) if off else _EMPTY
        # only rows still sampleable change the tree (a wrapped write names ~lookback rows per env, ~1 of
        # them sampleable): zeroing a zero leaf is a no-op, so the filter is exact
        off_rows = off_rows[self.ok[off_rows]]
        on_rows = np.concatenate(on) if on else _EMPTY
        self.ok[off_rows] = False
        self.ok[on_rows] = True
        self.sampler.mark(off_rows, on_rows)

    def _write(
        self,
        envs: np.ndarray,
        obs: np.ndarray,
        emb: Tensor | None,
        first: np.ndarray,
        last: np.ndarray,
        term: np.ndarray,
    ) -> None:
        """Append one row to each env in ``envs`` (distinct), updating what is sampleable."""
        if not self.started:
            self.started = True
            if self._files is not None:
                self._files.new_generation()
        c = self.config
        u = self.written[envs]
        rows = self.slot(envs, u)
        off = [rows]  # the new row has no n-step target yet
        wrapped = u >= self.seg
        if wrapped.any():
            # overwriting row u-L: it and every later row whose windows reach back to it stop being valid
            j = np.arange(c.lookback)
            back = self.slot(envs[wrapped, None], u[wrapped, None] - self.seg + j)
            # rows not sampleable stay so (~1 in lookback is): drop them first, test the rest
            live = self.ok[back]
            back, j = back[live], np.broadcast_to(j, live.shape)[live]
            off.append(back[(j == 0) | (self.pos[back] >= j)])
        pos = np.where(first, 0, self.pos[self.slot(envs, u - 1)] + 1)
        if self._files is not None:
            # counted before the row is written: a kill in between overstates what a resume must drop
            self._files.written[envs] = u + 1
        if isinstance(self.obs, Tensor):
            self.obs[torch.from_numpy(rows).to(self.device)] = torch.as_tensor(obs).to(self.device)
            if self._obs_file is not None:
                self._dirty[rows] = True
        else:
            self.obs[rows] = obs
        if self.emb is not None:
            assert emb is not None  # _check_step requires it when the ring keeps embeddings
            emb = emb.to(self.device, torch.float16)
            self.emb[torch.from_numpy(rows).to(self.device)] = emb
            if self._emb_file is not None:
                self._dirty[rows] = True  # mirrored into the file at the next checkpoint (no sync here)
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
        self._apply(off, on)

    def _close(self, envs: np.ndarray) -> None:
        """End the open episodes of ``envs`` at their newest row, as truncated (they did not terminate)."""
        if envs.size == 0:
            return
        u = self.written[envs] - 1
        rows = self.slot(envs, u)
        self.is_last[rows] = True
        self.terminated[rows] = False
        self.open[envs] = False
        self._apply([], [self._ended(envs, u, self.pos[rows])])

    def _ended(self, envs: np.ndarray, u_last: np.ndarray, pos_last: np.ndarray) -> np.ndarray:
        """Rows fewer than n steps before an episode's last row: their (shorter) target is complete now."""
        j = np.arange(1, self.config.n_step)
        back = self.slot(envs[:, None], u_last[:, None] - j)
        return back[pos_last[:, None] >= j]

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Where each env's rows end, its open episode and the sampler's weights; in RAM mode the rows too.

        With files, they are flushed first, so the checkpoint never points past rows on disk.
        """
        sd: dict[str, Any] = {
            "num_envs": self.num_envs,
            "segment": self.seg,
            "written": torch.from_numpy(self.written.copy()),
            "open": torch.from_numpy(self.open.copy()),
            "sampler": self.sampler.state_dict(),
        }
        if self._files is not None:
            self._mirror()
            self._files.flush()
            sd["files"] = {"id": self._files.id}
        else:  # views of the live ring: save them before the next write
            sd["rows"] = {name: torch.from_numpy(getattr(self, name)) for name in _ROW_FIELDS}
            sd["rows"]["obs"] = self.obs.cpu() if isinstance(self.obs, Tensor) else torch.from_numpy(self.obs)
            if self.emb is not None:
                sd["rows"]["emb"] = self.emb[: self.num_rows].cpu()
        return sd

    def _mirror(self) -> None:
        """Copy the device embeddings (and frames) written since the last checkpoint into the ring's files.

        Rows written after a checkpoint and lost in a crash are rows a resume drops or never reads
        (past the checkpoint's ends, or overwriting its rows: :meth:`_drop_overwritten`), so the file
        needs only the rows each checkpoint covers.
        """
        if not self._dirty.any():
            return
        rows = np.flatnonzero(self._dirty)
        at = torch.from_numpy(rows).to(self.device)
        if self._emb_file is not None:
            assert self.emb is not None  # the file mirrors the device embeddings
            self._emb_file[rows] = self.emb[at].cpu().numpy()
        if self._obs_file is not None:
            assert isinstance(self.obs, Tensor)  # the file mirrors the device frames
            self._obs_file[rows] = self.obs[at].cpu().numpy()
        self._dirty[:] = False

    def load_state_dict(self, sd: dict) -> None:
        """Restore :meth:`state_dict` before any write; the next write must start new episodes (env reset)."""
        if self.started:
            raise RuntimeError("load the replay state before adding any rows")
        if sd["num_envs"] != self.num_envs or sd["segment"] != self.seg:
            raise UserError(
                f"replay state has {sd['num_envs']} envs x {sd['segment']} rows, this ring "
                f"{self.num_envs} x {self.seg}: resume with the run's --num-envs and replay capacity"
            )
        files = self._files
        if files is None and "rows" not in sd:
            raise UserError("replay state keeps its rows in ring files: build the replay with that ring_dir")
        if files is not None and sd.get("files", {}).get("id") != files.id:
            raise UserError(
                f"replay state does not belong to the ring files in {files.folder} (another run, or none "
                "written there): resume from the run directory the checkpoint was written in"
            )
        np.copyto(self.written, sd["written"].numpy())
        np.copyto(self.open, sd["open"].numpy())
        self.sampler.load_state_dict(sd["sampler"])
        np.copyto(self.ok, self.sampler.weights() > 0)  # sampleable rows are exactly the non-zero leaves
        if files is None:
            for name in _ROW_FIELDS:
                np.copyto(getattr(self, name), sd["rows"][name].numpy())
            if isinstance(self.obs, Tensor):
                self.obs.copy_(sd["rows"]["obs"].to(self.device))
            else:
                np.copyto(self.obs, sd["rows"]["obs"].numpy())
            if self.emb is not None:
                self.emb[: self.num_rows].copy_(sd["rows"]["emb"].to(self.device))
        else:
            self._drop_overwritten(files.written_at_open - self.written)
            files.written[:] = self.written
            if self._emb_file is not None:
                assert self.emb is not None  # the file mirrors the device embeddings
                self.emb.copy_(torch.from_numpy(np.asarray(self._emb_file)).to(self.device))
            if self._obs_file is not None:
                assert isinstance(self.obs, Tensor)  # the file mirrors the device frames
                self.obs.copy_(torch.from_numpy(np.asarray(self._obs_file)).to(self.device))
        self.started = True
        self._need_first = True  # the envs were reset

    def _drop_overwritten(self, extra: np.ndarray) -> None:
        """Rows written after the checkpoint (``extra`` per env) overwrote its oldest rows: drop those
        and every row whose windows reach them; an env that lost its newest rows loses all of them."""
        if np.any(extra < 0):
            raise UserError(
                "the ring files end before the checkpoint: they are an older copy; resume from the run "
                "directory the checkpoint was written in"
            )
        c = self.config
        off = []
        for e in np.flatnonzero(extra):
            lost = min(int(extra[e]), self.seg)
            w0 = int(self.written[e])
            if lost > self.seg - c.n_step - c.lookback + 1:
                off.append(e * self.seg + np.arange(self.seg))
                self.open[e] = False  # its newest rows are gone: never continue or close that episode
                continue
            u = np.arange(max(0, w0 - self.seg), max(0, w0 - self.seg + lost + c.lookback - 1))
            off.append(self.slot(np.full(u.size, e), u))
        self._apply(off, [])
