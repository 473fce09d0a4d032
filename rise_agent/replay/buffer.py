"""The replay: a store source and/or an online ring, one sampler each, mixed into batches by a Mixer."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rise_agent.network import NetworkConfig
from rise_agent.replay.config import Batch, ReplayConfig, WindowedConfig
from rise_agent.replay.mixer import Mixer
from rise_agent.replay.ring import OnlineRing
from rise_agent.replay.sources import Source, StoreSource
from rise_data.envs.vector import Step
from rise_data.errors import UserError

__all__ = ["Replay"]


class Replay:
    """Store transitions + online ring, sampled by exact shares (see :mod:`rise_agent.replay`).

    ``network`` is the :class:`~rise_agent.network.NetworkConfig` that owns the windows (its frame stack S
    and context length K, 0 = no context); ``self.config`` is ``config`` with them added.
    """

    def __init__(
        self,
        config: ReplayConfig,
        obs_shape: tuple[int, int] = (84, 84),
        embed_dim: int = 512,
        num_envs: int = 0,
        device: str | torch.device = "cpu",
        store: StoreSource | None = None,
        *,
        network: NetworkConfig,
    ):
        self.config = config = WindowedConfig.of(config, network)
        if store is not None and (store.config.frame_stack, store.config.context_len) != self.windows:
            raise ValueError(
                f"the store source was opened for windows (S, K) = "
                f"{(store.config.frame_stack, store.config.context_len)}, not {self.windows}: open it with these"
            )
        self.obs_shape = tuple(int(x) for x in obs_shape)
        self.embed_dim = int(embed_dim) if config.context_len else 0
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.per_beta = config.per_beta  # assign to anneal the importance-sampling exponent
        self.store = store
        base = 0 if store is None else store.num_rows  # the ring's global rows follow the store's
        self.ring = (
            OnlineRing(
                config, self.num_envs, self.obs_shape, self.embed_dim, self.device, config.ring_dir, base
            )
            if self.num_envs > 0
            else None
        )
        self.mixer = Mixer.resolve(config.offline_fraction, store is not None, self.ring is not None)
        # (batch size, future of the prefetched batch) with config.prefetch
        self._pending: tuple[int, Future[Batch]] | None = None
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_store(
        cls,
        store_path: str | os.PathLike,
        embedding: str | None,
        config: ReplayConfig,
        num_envs: int = 0,
        device: str | torch.device = "cpu",
        cache_dir: str | os.PathLike | None = None,
        *,
        network: NetworkConfig,
    ) -> Replay:
        """A replay whose store source is the store at ``store_path`` (plus an online ring if ``num_envs``).

        ``embedding`` names the store's embeddings array the context windows read (required when
        ``context_len > 0``, ignored otherwise); it must be fully encoded.
        """
        from rise_data.store import open_store

        device = torch.device(device)
        store = open_store(store_path)
        windowed = WindowedConfig.of(config, network)
        source = StoreSource.open(store, embedding, windowed, device, cache_dir)
        dim = source.emb.shape[1] if source.emb is not None else 0
        shape = tuple(store.env["obs_shape"])
        return cls(config, shape, dim, num_envs, device, source, network=network)

    @property
    def windows(self) -> tuple[int, int]:
        """``(frame_stack, context_len)``: the network's S and K this replay was built for."""
        return self.config.frame_stack, self.config.context_len

    # -- counters -----------------------------------------------------------------------------------
    @property
    def sources(self) -> list[Source]:
        return [s for s in (self.store, self.ring) if s is not None]

    @property
    def online_transitions(self) -> int:
        """Sampleable transitions in the online ring (what ``--learning-starts`` counts)."""
        return 0 if self.ring is None else self.ring.count

    @property
    def store_transitions(self) -> int:
        """Sampleable transitions of the store."""
        return 0 if self.store is None else self.store.count

    def __len__(self) -> int:
        """Sampleable transitions of both sources."""
        return self.store_transitions + self.online_transitions

    def describe(self, batch_size: int | None = None) -> dict:
        """Sources, sizes and the share of each batch each one supplies (for the printed config)."""
        f = self.mixer.offline_fraction
        out: dict = {"offline_fraction": f, "sampler": repr(self.sources[0].sampler), "sources": {}}
        split = self.mixer.split(batch_size) if batch_size else None
        if self.store is not None:
            out["sources"]["store"] = {
                "rows": self.store.num_rows,
                "transitions": self.store.count,
                "share": f,
                **({"rows_per_batch": split[0]} if split else {}),
            }
        if self.ring is not None:
            r = self.ring
            out["sources"]["online"] = {
                "capacity": r.num_rows,
                "envs": r.num_envs,
                "rows_per_env": r.seg,
                "transitions": r.count,
                "storage": r.storage,
                "share": 1.0 - f,
                **({"rows_per_batch": split[1]} if split else {}),
            }
        return out

    # -- online writes ----------------------------------------------------------------------------
    def _require_ring(self) -> OnlineRing:
        if self.ring is None:
            raise RuntimeError("this replay has no online ring (num_envs=0)")
        return self.ring

    def add_first(self, step_obs: np.ndarray, emb: Tensor | None) -> None:
        """Start one new episode per env with the observations of ``env.reset()``.

        An env whose previous episode is still open has it closed as truncated at its newest row.
        """
        ring = self._require_ring()
        self._drain()  # a prefetch gather in flight reads rows this write changes
        ring.add_first(np.asarray(step_obs), emb)

    def add(self, actions: np.ndarray, step: Step, emb: Tensor | None) -> None:
        """Record one vector step: ``actions`` were sent at each env's newest row and ``step`` came back.

        Follows next-step autoreset: where ``step.is_first[i]`` the observation starts a new episode
        and ``actions[i]`` was ignored (the previous episode ended on the step before).
        """
        ring = self._require_ring()
        self._drain()
        ring.add(actions, step, emb)

    # -- sampling ---------------------------------------------------------------------------------
    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """A batch of exactly ``mixer.split(batch_size)`` store and ring rows, each drawn by its sampler.

        With ``config.prefetch`` the batch returned was drawn at the previous call and gathered in a
        background thread while the caller worked (its learner step); this call draws the next one. The
        draws stay in this thread, in the same order, so with priorities that do not move the batches
        equal the eager ones; moving priorities reach a draw one step late (the batch drawn before the
        previous step's update). Writes wait for a gather in flight (:meth:`add`, :meth:`add_first`).
        """
        if not self.config.prefetch:
            return self._assemble(self._draw(batch_size, rng))
        pending = self._pending
        if pending is None or pending[0] != int(batch_size):
            self._drain()
            pending = (int(batch_size), self._submit(self._draw(batch_size, rng)))
        self._pending = (pending[0], self._submit(self._draw(batch_size, rng)))
        return pending[1].result()

    def _submit(self, draw: _Draw) -> Future[Batch]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rise-replay-prefetch")
        return self._pool.submit(self._assemble, draw)

    def _drain(self) -> None:
        """Wait for a prefetch gather in flight (it reads rows a write would change); keep its batch."""
        if self._pending is not None:
            self._pending[1].exception()

    def _draw(self, batch_size: int, rng: np.random.Generator) -> _Draw:
        """The rows of one batch and their draw probabilities (the only part that reads the samplers)."""
        B = int(batch_size)
        draws: list[tuple[Source, np.ndarray, np.ndarray]] = []
        for source, n, share in zip(
            (self.store, self.ring),
            self.mixer.split(B),
            (self.mixer.offline_fraction, 1.0 - self.mixer.offline_fraction),
            strict=True,
        ):
            if n == 0:
                continue
            assert source is not None  # the mixer gives a missing source no rows
            if source.count == 0:
                raise ValueError(
                    f"the replay's {source.name} source holds no sampleable transitions yet, and "
                    f"{n} of {B} rows must come from it: sample once it has some"
                )
            idx, prob = source.sampler.sample(n, rng)
            draws.append((source, idx, share * prob))
        return B, draws, float(self.per_beta)

    def _assemble(self, draw: _Draw) -> Batch:
        """Gather the drawn rows (targets, frame stacks, context windows) into a Batch on the device."""
        B, draws, per_beta = draw
        c, dev = self.config, self.device
        S, K = c.frame_stack, c.context_len
        pin = dev.type == "cuda" and c.pinned
        # [current, next]; pinned on CUDA so the upload is asynchronous (the caching host allocator
        # does not reuse the buffer before the copy has finished)
        frames_t = torch.empty((2, B, S, *self.obs_shape), dtype=torch.uint8, pin_memory=pin)
        out = _Out(
            frames=frames_t.numpy(),
            context=torch.empty((2, B, K, self.embed_dim), dtype=torch.float16, device=dev) if K else None,
            mask=np.empty((2, B, K), dtype=bool) if K else None,
            action=np.empty(B, np.int64),
            ret=np.empty(B, np.float32),
            disc=np.empty(B, np.float32),
            prob=np.empty(B, np.float64),
            index=np.empty(B, np.int64),
            # the ring's frames on the device (obs_on_device): batches are gathered there, host rows uploaded
            frames_dev=(
                torch.empty((2, B, S, *self.obs_shape), dtype=torch.uint8, device=dev)
                if self.ring is not None and isinstance(self.ring.obs, Tensor)
                else None
            ),
        )
        a = 0
        for source, idx, prob in draws:
            n = len(idx)
            _gather(source, idx, out, slice(a, a + n), c, dev)
            out.prob[a : a + n] = prob
            a += n
        weights = np.ones(B, np.float64)
        if c.prioritized and per_beta:
            # (N P)^-beta / max: N cancels in the normalisation, so only the per-draw probability matters
            weights = out.prob**-per_beta
            weights /= weights.max()

        def up(
            x: np.ndarray,
        ) -> Tensor:  # pinned staging and non_blocking on CUDA: no upload waits for the whole stream
            t = torch.from_numpy(x)
            return t.pin_memory().to(dev, non_blocking=True) if pin else t.to(dev)

        frames_t = out.frames_dev if out.frames_dev is not None else frames_t.to(dev, non_blocking=pin)
        mask = None if out.mask is None else up(out.mask)
        ctx = out.context
        return Batch(
            frames=frames_t[0],
            context=None if ctx is None else ctx[0],
            mask=None if mask is None else mask[0],
            action=up(out.action),
            returns=up(out.ret),
            discount=up(out.disc),
            next_frames=frames_t[1],
            next_context=None if ctx is None else ctx[1],
            next_mask=None if mask is None else mask[1],
            weights=up(weights.astype(np.float32)),
            index=out.index,
        )

    def update_priorities(self, index: np.ndarray, td: np.ndarray | Tensor) -> None:
        """Give sampled rows (global ``index``) new TD errors; each source's sampler turns them into
        priorities (``(|td| + eps) ** alpha`` when prioritized, nothing when uniform).

        Rows that stopped being sampleable since they were sampled (overwritten) are skipped.
        """
        index = np.asarray(index, np.int64).ravel()
        td = np.asarray(td.detach().float().cpu() if isinstance(td, Tensor) else td, np.float64).ravel()
        if index.shape != td.shape:
            raise ValueError(f"index {index.shape} and td {td.shape} differ in shape")
        for source in self.sources:
            local = index - source.base
            sel = (local >= 0) & (local < source.num_rows)
            source.reprioritize(local[sel], td[sel])

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Small state, loadable with ``torch.load(weights_only=True)``: the store's sampler weights and
        the ring's ends, open episodes and sampler (plus its rows when the ring lives in RAM)."""
        sd: dict = {"version": 2, "windows": list(self.windows), "per_beta": float(self.per_beta)}
        if self.store is not None:
            sd["store"] = {"rows": self.store.num_rows, "sampler": self.store.sampler.state_dict()}
        if self.ring is not None:
            sd["ring"] = self.ring.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        """Restore :meth:`state_dict` into a fresh replay built with the same config, store and num_envs.

        The envs are reset on a resume, so the next online write is :meth:`add_first`.
        """
        self._drain()
        self._pending = None  # a batch drawn before the restore is not this state's
        have = (self.store.num_rows if self.store else None, self.ring is not None)
        want = (sd.get("store", {}).get("rows"), "ring" in sd)
        if sd.get("version") != 2 or have != want:
            raise UserError(
                "replay state does not fit this replay (a different store, or online vs offline): "
                "resume with the run's own --store and mode"
            )
        if tuple(sd.get("windows", ())) != self.windows:
            raise UserError(
                f"replay state was written for windows (S, K) = {tuple(sd.get('windows', ()))}, this replay "
                f"has {self.windows}: resume with the run's own network frame_stack and context_len"
            )
        self.per_beta = float(sd["per_beta"])
        if self.store is not None:
            self.store.sampler.load_state_dict(sd["store"]["sampler"])
        if self.ring is not None:
            self.ring.load_state_dict(sd["ring"])


# one batch's draw: (batch size, [(source, its local rows, their draw probabilities)], PER beta)
_Draw = tuple[int, list[tuple[Source, np.ndarray, np.ndarray]], float]


@dataclass
class _Out:
    """The numpy/torch buffers a batch is gathered into ([current, next] first for frames and windows)."""

    frames: np.ndarray  # (2, B, S, H, W) uint8 host staging
    context: Tensor | None  # (2, B, K, D) float16 on the device; None when K = 0
    mask: np.ndarray | None  # (2, B, K) bool; None when K = 0
    action: np.ndarray
    ret: np.ndarray
    disc: np.ndarray
    prob: np.ndarray  # float64 draw probability of each row
    index: np.ndarray  # global replay rows
    frames_dev: Tensor | None  # (2, B, S, H, W) on the device when the ring's frames live there


def _gather(
    source: Source, idx: np.ndarray, out: _Out, sl: slice, c: WindowedConfig, dev: torch.device
) -> None:
    """Transitions ``idx`` of ``source`` (targets, frame stacks, context windows) into ``out[sl]``."""
    S, K, nb = c.frame_stack, c.context_len, len(idx)
    r, nxt, d = source.targets(idx)
    both = np.concatenate([idx, nxt])
    srows = source.window(both, S)[0].reshape(2, nb, S)
    if isinstance(source.obs, Tensor):  # frames on the device: gather there
        assert out.frames_dev is not None  # allocated whenever the ring's frames are on the device
        out.frames_dev[:, sl] = source.obs[torch.from_numpy(srows).to(dev)]
    else:
        for i in range(2):  # slots before the episode start hold its first frame (BTR's FrameStack padding)
            np.take(source.obs, srows[i], axis=0, out=out.frames[i, sl], mode="clip")
        if out.frames_dev is not None:
            out.frames_dev[:, sl].copy_(torch.from_numpy(out.frames[:, sl]), non_blocking=dev.type == "cuda")
    if K:
        assert out.mask is not None and out.context is not None and source.emb is not None  # K > 0
        crows, cmask = source.window(both, K)
        out.mask[:, sl] = cmask.reshape(2, nb, K)
        # masked slots gather the zero row: no masking pass over (B, K, D) afterwards
        at = torch.from_numpy(np.where(cmask, crows, source.num_rows).reshape(2, nb * K)).to(dev)
        for i in range(2):
            dst = out.context[i, sl].view(nb * K, out.context.shape[-1])
            torch.index_select(source.emb, 0, at[i], out=dst)
    out.action[sl], out.ret[sl], out.disc[sl] = source.action[idx], r, d
    out.index[sl] = source.base + idx
