"""The one rollout driver: vector-env stepping, episode bookkeeping and the per-episode buffer.

``collect``, online training, write-back and evaluation all step a :class:`~rise_data.envs.FrameVectorEnv`
through :class:`Rollout`, so the cut rule (when an episode ends, what a cut keeps) lives here only.

The loop, with the env stepping while the caller works (learning, writing) between ``send`` and ``recv``::

    rollout = Rollout(env, obs=True, frames=True)            # keep nothing: Rollout(env)
    step = rollout.reset(seed)
    finished = rollout.file(step)                            # the reset step starts every episode
    rollout.send(policy.act(step))
    while running:
        step = rollout.recv()                                # the step the oldest send led to
        rollout.send(policy.act(step))                       # the envs step on ...
        for f in rollout.file(step):                         # ... while this thread files the last step
            log(f.env_index, f.ret, f.length); store_writer.put(f.episode)
    rollout.recv()                                           # a step still in flight is not kept
    leftover = rollout.cut_running()                         # running episodes, cut as truncated

Online training sends, learns, then receives (``file(step, {name: emb})`` with the embeddings the actor
computed); evaluation keeps no rows (``Rollout(env)``); ``--save-store`` / write-back keep rows and
embeddings (``extras``) and give written episodes back with ``recycle`` so their blocks are reused.

Steps follow ``FrameVectorEnv``'s next-step autoreset: a ``Step`` with ``is_first[i]`` starts env i's next
episode, and the action sent for env i at the step before it was ignored by the env.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np
from numcodecs import LZ4

from rise_data.envs.vector import FrameVectorEnv, Step
from rise_data.store import Episode
from rise_data.store.write import Rows

BLOCK_ROWS = 64  # rows per buffer block (64 Atari RGB frames = 6.4 MB)
PACK_CODEC = (
    LZ4()
)  # full blocks held until their episode ends (Pong frames ~130x smaller; zstd: 1.6x the CPU)
ROW_FIELDS = ("obs", "frame")  # extras are kept under their own names, which must not be one of these


@dataclass
class Finished:
    """One episode that ended (or was cut): what every loop logs, and the rows when they are kept."""

    env_index: int
    ret: float  # sum of raw rewards
    length: int  # actions taken (the episode has length + 1 observations)
    terminated: bool
    truncated: bool
    episode: Episode | None = None  # the rows, when the rollout keeps them


class BlockPool:
    """Fixed-size row blocks per kept field, reused once packed or written; a packer thread packs full ones.

    Reuse matters: copying a 100 kB frame into memory that was never touched costs several times the copy
    itself (page faults); recycled blocks are warm. Rows must be held until their episode ends (hundreds of
    steps in Atari), so a full block is packed (:class:`PackedBlock`) off the stepping thread and goes back
    to the pool at once. A running episode is a list of blocks per field, so an episode of any length never
    reallocates. Thread-safe: the packer and a writer thread ``put``/``give`` while stepping ``take``s.
    """

    def __init__(self, fields: dict[str, tuple[tuple[int, ...], str]]):
        self.fields = fields  # name -> (row shape, dtype)
        self.free = {name: queue.SimpleQueue() for name in fields}
        self._packing: queue.SimpleQueue[PackedBlock | None] = queue.SimpleQueue()
        self._packer: threading.Thread | None = None

    def take(self, name: str) -> np.ndarray:
        try:
            return self.free[name].get_nowait()
        except queue.Empty:
            shape, dtype = self.fields[name]
            return np.empty((BLOCK_ROWS, *shape), dtype)

    def put(self, name: str, block: np.ndarray) -> None:
        self.free[name].put(block)

    def pack(self, name: str, blocks: list) -> None:
        """Swap the full last block of ``blocks`` for a :class:`PackedBlock` and queue it for the packer.

        Interrupt-safe: ``blocks[-1]`` is the raw block or its PackedBlock at every point (one never queued
        keeps its raw rows)."""
        packed = PackedBlock(name, blocks[-1])
        blocks[-1] = packed
        if self._packer is None:
            self._packer = threading.Thread(target=self._pack_loop, daemon=True, name="rise-block-packer")
            self._packer.start()
        self._packing.put(packed)

    def _pack_loop(self) -> None:
        while (packed := self._packing.get()) is not None:
            packed.pack(self)

    def give(self, episode: Episode) -> None:
        """Return the blocks an episode's rows were built on (after they are written)."""
        rows = {"obs": episode.obs, "frame": episode.frame, **episode.embeddings}
        for name, r in rows.items():
            if isinstance(r, Rows) and name in self.free:
                for part in r.parts:  # the last, unpacked block (the packer gives back the others)
                    block = part if not isinstance(part, np.ndarray) or part.base is None else part.base
                    if isinstance(block, np.ndarray) and block.shape[0] == BLOCK_ROWS:
                        self.free[name].put(block)

    def close(self) -> None:
        """Stop the packer (blocks still queued keep their raw rows)."""
        if self._packer is not None:
            self._packing.put(None)
            self._packer.join()
            self._packer = None


class PackedBlock:
    """A full block's rows, compressed by the packer thread so the block itself can be reused.

    Until the packer runs, the block holds the rows; packer and readers take a lock, so a reader never sees
    a block the packer gave back. Reads as rows (``len``, slices copied), so it is a ``Rows`` part the store
    writes from; a reading thread decodes each packed block once into one warm buffer per row shape.
    """

    __slots__ = ("name", "block", "blob", "shape", "dtype", "lock")

    def __init__(self, name: str, block: np.ndarray):
        self.name, self.block, self.blob = name, block, None
        self.shape, self.dtype = block.shape, block.dtype
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def pack(self, pool: BlockPool) -> None:
        """Compress the rows and give the block back to ``pool`` (the packer thread's task)."""
        with self.lock:
            self.blob = PACK_CODEC.encode(self.block)
            block, self.block = self.block, None
        pool.put(self.name, block)

    def __getitem__(self, s: slice) -> np.ndarray:
        """Rows ``s``, copied."""
        with self.lock:
            if self.blob is None:
                return self.block[s].copy()
        slots = _decoded.__dict__.setdefault("slots", {})  # (shape, dtype) -> (PackedBlock, rows)
        packed, rows = slots.get((self.shape, self.dtype), (None, None))
        if packed is not self:
            rows = np.empty(self.shape, self.dtype) if rows is None else rows
            PACK_CODEC.decode(self.blob, out=rows)
            slots[self.shape, self.dtype] = (self, rows)
        return rows[s].copy()


# per reading thread: the last block it decoded per row shape (readers go through a block's rows in order)
_decoded = threading.local()


class EpisodeBuffer:
    """One env's episode in progress: actions, rewards and (when kept) rows in pooled blocks, copied once."""

    __slots__ = ("pool", "blocks", "action", "reward", "n", "end")

    def __init__(self, pool: BlockPool | None):
        self.pool = pool
        self.blocks: list[list[np.ndarray | PackedBlock]] = [[] for _ in (pool.fields if pool else ())]
        self.action: list[int] = []
        self.reward: list[float] = []
        self.n = 0  # observations pushed
        self.end: tuple[bool, bool] | None = None  # (terminated, truncated) once the env said it ended

    def push(self, sources: list[np.ndarray], i: int) -> None:
        """Append observation row ``i`` of each kept field's (num_envs, ...) source."""
        j = self.n % BLOCK_ROWS
        if j == 0 and sources:
            self._next_blocks()
        for k, src in enumerate(sources):
            self.blocks[k][-1][j] = src[i]
        self.n += 1  # last: an interrupt before it leaves the row uncounted

    def _next_blocks(self) -> None:
        """Pack each field's full block (rows before the last block are only read) and start the next."""
        for blocks, name in zip(self.blocks, self.pool.fields, strict=True):
            if blocks:
                self.pool.pack(name, blocks)
            blocks.append(self.pool.take(name))

    def steps(self) -> int:
        """Actions of the consistent prefix (an interrupt can land between an action and its observation)."""
        return max(0, min(len(self.action), len(self.reward), self.n - 1))

    def cut(self, env_index: int, terminated: bool, truncated: bool) -> Finished:
        """The episode as it stands: T actions and rewards, T + 1 observation rows. A prefix shorter than
        what was recorded (an interrupt between an action and its observation) is a cut: truncated."""
        t = self.steps()
        if not t == len(self.action) == len(self.reward) == self.n - 1:
            terminated, truncated = False, True
        reward = np.asarray(self.reward[:t], np.float32)
        finished = Finished(env_index, float(np.sum(reward, dtype=np.float64)), t, terminated, truncated)
        if self.pool is not None:
            rows = {name: _rows(b, t + 1) for name, b in zip(self.pool.fields, self.blocks, strict=True)}
            finished.episode = Episode(
                obs=rows.pop("obs"),
                frame=rows.pop("frame", None),
                action=np.asarray(self.action[:t], np.int64),
                reward=reward,
                terminated=terminated,
                truncated=truncated,
                env_index=env_index,
                embeddings=rows,
            )
        return finished


def _rows(blocks: list[np.ndarray], n: int) -> Rows:
    full, rest = divmod(n, BLOCK_ROWS)
    return Rows(blocks[:full] + ([blocks[full][:rest]] if rest else []))


class Rollout:
    """Steps a vector env and files each step into per-env episode buffers; see the module docstring.

    Keeps, per episode, nothing but return and length (the default), or the rows: ``obs`` (the agent
    observations: a store ``Episode``), ``frames`` too, and ``extras``: named per-row arrays the caller
    passes to :meth:`file` (``{name: (row_shape, dtype)}``; they become ``Episode.embeddings[name]``).
    """

    def __init__(
        self,
        env: FrameVectorEnv,
        *,
        obs: bool = False,
        frames: bool = False,
        extras: dict[str, tuple[tuple[int, ...], str]] | None = None,
    ):
        extras = dict(extras or {})
        if (frames or extras) and not obs:
            raise ValueError("keeping frames or extras needs obs=True (a stored episode always has its obs)")
        if frames and env.frame_shape is None:
            raise ValueError("this env has no RGB frames to keep; pass frames=False")
        if set(extras) & set(ROW_FIELDS):
            raise ValueError(f"extras may not be named {' or '.join(ROW_FIELDS)}")
        fields: dict[str, tuple[tuple[int, ...], str]] = {}
        if obs:
            fields["obs"] = (tuple(env.obs_shape), "uint8")
        if frames:
            fields["frame"] = (tuple(env.frame_shape), "uint8")
        fields.update({k: (tuple(shape), str(np.dtype(dtype))) for k, (shape, dtype) in extras.items()})
        self.env = env
        self.num_envs = env.num_envs
        self.extras = list(extras)
        self.pool = BlockPool(fields) if fields else None
        self.buffers = [EpisodeBuffer(self.pool) for _ in range(self.num_envs)]
        self.steps = 0  # actions filed (env steps that belong to an episode)
        self.episodes = 0  # episodes that ended in the env (cuts not counted)
        self._sent: deque[np.ndarray] = deque()  # actions sent, whose step was not received yet
        self._received: deque[np.ndarray | None] = deque()  # actions of received steps not filed yet
        self._ended: list[tuple[int, EpisodeBuffer]] = []  # ended in the file() under way

    # -- stepping -----------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Step:
        """Reset every env; the returned step starts every episode (file it). Running buffers are dropped:
        call :meth:`cut_running` first to keep them."""
        step = self.env.reset(seed=seed)
        self.buffers = [EpisodeBuffer(self.pool) for _ in range(self.num_envs)]
        self._sent.clear()
        self._received.clear()
        self._received.append(None)
        return step

    def send(self, actions: np.ndarray) -> None:
        """Start the envs on ``actions`` (one per env) for the last step received; returns at once."""
        actions = np.asarray(actions, np.int64)
        self.env.send(actions)
        self._sent.append(actions)

    def recv(self) -> Step:
        """Wait for the step the oldest outstanding ``send`` led to."""
        if not self._sent:
            raise RuntimeError("recv() without a send(): send actions for the last step first")
        step = self.env.recv()
        self._received.append(self._sent.popleft())
        return step

    # -- bookkeeping ----------------------------------------------------------------------------------
    def file(self, step: Step, extras: dict[str, np.ndarray] | None = None) -> list[Finished]:
        """Record a received step (in order, each once); returns the episodes it ended.

        ``extras``: the per-row arrays named at construction, each (num_envs, *row_shape), for this step's
        observations. Interrupt-safe: a KeyboardInterrupt anywhere in here loses no ended episode and cuts
        none twice (:meth:`cut_running` picks up where it stopped).
        """
        if not self._received:
            raise RuntimeError("file() each step that reset()/recv() returned, once and in order")
        actions = self._received.popleft()
        sources = self._sources(step, extras)
        done = step.terminated | step.truncated
        buffers, first = self.buffers, step.is_first
        for i in range(self.num_envs):
            b = buffers[i]
            if not first[i]:
                b.action.append(actions[i])
                b.reward.append(step.reward[i])
                self.steps += 1
            if done[i]:  # before the push: an interrupt after the push must still know how it ended
                b.end = (bool(step.terminated[i]), bool(step.truncated[i]))
            b.push(sources, i)
            if done[i]:
                self.episodes += 1
                self._ended.append((i, b))
                buffers[i] = EpisodeBuffer(self.pool)
        out = [b.cut(i, *b.end) for i, b in self._ended]
        self._ended = []  # no call between here and the return: an interrupt cannot land in between
        return out

    def _sources(self, step: Step, extras: dict[str, np.ndarray] | None) -> list[np.ndarray]:
        if self.pool is None:
            return []
        extras = extras or {}
        if set(extras) != set(self.extras):
            raise ValueError(f"file() needs extras {sorted(self.extras)}, got {sorted(extras)}")
        out = [step.obs]
        if "frame" in self.pool.fields:
            out.append(step.frame)
        return out + [np.asarray(extras[k]) for k in self.extras]

    def cut_running(self) -> list[Finished]:
        """End every episode now: ones that ended during an interrupted ``file()`` as they ended, the running
        ones (with at least one action) cut as truncated. Buffers start afresh."""
        ended = {id(b) for _, b in self._ended}
        out = [b.cut(i, *b.end) for i, b in self._ended]
        for i, b in enumerate(self.buffers):
            if id(b) in ended or b.steps() == 0:
                continue
            # b.end: it ended, but the interrupt came before it was listed (cut() checks it is whole)
            out.append(b.cut(i, *(b.end or (False, True))))
        self._ended = []
        self.buffers = [EpisodeBuffer(self.pool) for _ in range(self.num_envs)]
        return out

    def recycle(self, episodes: list[Episode]) -> None:
        """Hand written episodes' blocks back for reuse, once nothing reads their rows any more (they will be
        overwritten). Optional: blocks never handed back are simply freed."""
        if self.pool is not None:
            for ep in episodes:
                self.pool.give(ep)

    def close(self) -> None:
        self.env.close()
        if self.pool is not None:
            self.pool.close()
