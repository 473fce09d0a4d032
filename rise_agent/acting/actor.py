"""Acting in vector envs with the same frame-stack and context definition the replay trains on.

Per env the actor keeps the last ``frame_stack`` agent observations and the last K frozen-encoder
embeddings of the *current* episode in device ring buffers. Windows are left-padded, current frame
last; before the episode start the frame stack repeats the episode's first frame (BTR's FrameStack)
and the context window holds zeros with mask False. Both index with
:func:`rise_data.windows.window_offsets`, the rule the replay's sources use, and embeddings are kept in float16 as the replay stores them, so the network sees the same
inputs when acting as when training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rise_agent.acting.view import agent_view
from rise_agent.network import RiseNetwork, disable_noise
from rise_data.encode.encoders import Encoder
from rise_data.envs import Step
from rise_data.errors import UserError
from rise_data.windows import window_offsets

__all__ = ["Actor", "epsilon_draws", "epsilon_schedule"]


def epsilon_schedule(
    step: int,
    start: float = 1.0,
    end: float = 0.01,
    decay_steps: int = 2_000_000,
    disable_after: int | None = None,
) -> float:
    """BTR's ε after ``step`` env steps (summed over envs), 0 from ``disable_after`` on.

    BTR's code (``EpsilonGreedy.update_eps``, run once per stored transition) moves ε a
    ``1/decay_steps`` fraction of the way to ``end`` each env step, ``ε <- max(ε - (ε - end)/S, end)``,
    i.e. an exponential approach with time constant S = ``decay_steps``, in closed form
    ``end + (start - end) * (1 - 1/S)**step``: ε(S) ~= 0.37 and ε(4S) ~= 0.028 for BTR's S = 2M env
    steps (8M frames), not a linear ramp that reaches ``end`` at S. ``decay_steps <= 0``: ``end`` at once.
    """
    if disable_after is not None and step >= disable_after:
        return 0.0
    step = max(int(step), 0)
    if step == 0:
        return float(start)
    if decay_steps <= 0:
        return float(end)
    value = end + (start - end) * (1.0 - 1.0 / decay_steps) ** step
    return float(max(value, end))  # BTR's max(): an increasing schedule (start < end) jumps to end


class _Window:
    """Each env's last ``length`` items in one (E, length + 1, ...) device ring (the envs step together).

    Windows follow :func:`rise_data.windows.window_offsets` on each env's episode position, kept on the
    host; the extra last slot holds zeros, what masked context slots gather (as the replay's zero row).
    """

    def __init__(self, num_envs: int, length: int, item_shape: tuple[int, ...], dtype, device) -> None:
        self.length = length
        self.buf = torch.zeros((num_envs, length + 1, *item_shape), dtype=dtype, device=device)
        self.pos = np.full(num_envs, -1, np.int64)  # episode position of each env's newest item
        self.head = -1  # slot of the newest item
        self.envs = np.arange(num_envs)[:, None]

    def push(self, items: Tensor, first: np.ndarray) -> None:
        self.head = (self.head + 1) % self.length
        self.pos = np.where(first, 0, self.pos + 1)
        self.buf[:, self.head] = items

    def read(self, zeros_before_start: bool) -> tuple[Tensor, Tensor]:
        """Oldest-first window (E, L, ...) and its valid mask (E, L). Before the episode start: the
        episode's first item (frame stacks), or with ``zeros_before_start`` zeros (context windows)."""
        offsets, valid = window_offsets(self.pos, self.length)
        slot = (self.head + offsets) % self.length
        if zeros_before_start:
            slot = np.where(valid, slot, self.length)
        dev = self.buf.device
        index = torch.from_numpy(self.envs * (self.length + 1) + slot).to(dev, non_blocking=True)
        flat = self.buf.view(-1, *self.buf.shape[2:])
        return flat[index], torch.from_numpy(valid).to(dev, non_blocking=True)


class Actor:
    """Keeps, per env, the last frames and the last K embeddings of the current episode; picks actions.

    ``observe(step)`` must see every step the envs return (the ``reset()`` step first); it embeds the
    new frames once, in one batch, and returns those embeddings so the trainer can store them without
    re-encoding. ``act`` then picks ε-greedy actions on top of the network's noisy argmax (argmax over
    the advantage stream, as BTR acts: same argmax as Q, one stream cheaper).
    """

    def __init__(
        self,
        network: RiseNetwork,
        encoder: Encoder | None,
        num_envs: int,
        device: torch.device | str = "cpu",
        n_tau: int = 8,
        view_on_device: bool = False,
    ) -> None:
        cfg = network.config  # owns the windows: frame stack and K
        k = cfg.context_len
        if k > 0:
            if encoder is None:
                raise UserError("context_len > 0 needs the frozen encoder that made the stored embeddings")
            if encoder.dim != cfg.embed_dim:
                raise UserError(
                    f"encoder {encoder.name} gives {encoder.dim}-d embeddings, the network expects {cfg.embed_dim}"
                )
        self.network = network
        self.encoder = encoder if k > 0 else None  # K=0 (plain BTR) needs no embeddings
        self.num_envs = num_envs
        self.context_len = k
        self.device = torch.device(device)
        self.n_tau = n_tau
        # make the agent view from the RGB frame on the device (rise_agent.acting.view), not step.obs
        self.view_on_device = view_on_device
        self.n_actions = cfg.n_actions
        self._frames = _Window(num_envs, cfg.frame_stack, tuple(cfg.frame_hw), torch.uint8, self.device)
        self._context = _Window(num_envs, k, (cfg.embed_dim,), torch.float16, self.device) if k > 0 else None
        self._seen = False

    def for_envs(self, num_envs: int) -> Actor:
        """A fresh actor over the same network and encoder for ``num_envs`` envs (one env group)."""
        return Actor(
            self.network,
            self.encoder,
            num_envs,
            device=self.device,
            n_tau=self.n_tau,
            view_on_device=self.view_on_device,
        )

    def observe(self, step: Step) -> Tensor | None:
        """Push the step's observations (resetting envs where ``step.is_first``); returns its (E, D) float16 embeddings."""
        obs = np.asarray(step.obs)
        if obs.shape != (self.num_envs, *self._frames.buf.shape[2:]):
            raise ValueError(f"expected obs {(self.num_envs, *self._frames.buf.shape[2:])}, got {obs.shape}")
        first = np.asarray(step.is_first, dtype=bool)
        if not self._seen and not first.all():
            raise ValueError(
                "the first observed step must start every episode (the step env.reset() returns)"
            )
        self._seen = True
        frame = None
        if self.view_on_device and step.frame is not None:
            frame = torch.from_numpy(np.asarray(step.frame)).to(self.device, non_blocking=True)
            self._frames.push(agent_view(frame, obs.shape[-1]), first)
        else:
            self._frames.push(torch.from_numpy(obs).to(self.device), first)
        encoder = self.encoder
        if self._context is None or encoder is None:  # K = 0: neither
            return None
        source = encoder.preprocessing.source
        rows = (step.frame if frame is None else frame) if source == "frame" else obs
        if rows is None:
            raise ValueError(f"encoder {encoder.name} reads RGB frames, but the env returns none")
        emb = encoder(rows if isinstance(rows, Tensor) else np.asarray(rows)).to(self.device, torch.float16)
        self._context.push(emb, first)
        return emb

    def frames(self) -> Tensor:
        """uint8 (E, frame_stack, H, W), oldest first, the episode's first frame repeated before its start."""
        return self._frames.read(zeros_before_start=False)[0]

    def context(self) -> tuple[Tensor | None, Tensor | None]:
        """float16 (E, K, D) and bool (E, K): left-padded, current frame last; (None, None) when K = 0."""
        if self._context is None:
            return None, None
        return self._context.read(zeros_before_start=True)

    @torch.no_grad()
    def greedy(self, noise_off: bool = False) -> Tensor:
        """Argmax actions (E,) on the device, with fresh parameter noise unless ``noise_off``."""
        if not self._seen:
            raise RuntimeError("observe the env.reset() step before acting")
        ctx, mask = self.context()
        if noise_off:
            with disable_noise(self.network):
                q = self.network.q_values(self.frames(), ctx, mask, self.n_tau, advantages_only=True)
        else:
            self.network.reset_noise()  # BTR draws new noise for every action selection
            q = self.network.q_values(self.frames(), ctx, mask, self.n_tau, advantages_only=True)
        return q.argmax(dim=1)

    def act(self, epsilon: float, rng: np.random.Generator, greedy_noise_off: bool = False) -> np.ndarray:
        """ε-greedy actions (E,) int64; the random draws come from ``rng``."""
        return self.pick(*epsilon_draws(epsilon, rng, self.num_envs, self.n_actions), greedy_noise_off)

    def pick(self, explore: np.ndarray, random: np.ndarray, greedy_noise_off: bool = False) -> np.ndarray:
        """The actions (E,) int64: ``random`` where ``explore``, the greedy action elsewhere."""
        if explore.all():  # no env takes the greedy action: skip the forward and its random draws
            return random
        greedy = self.greedy(greedy_noise_off).cpu().numpy().astype(np.int64)
        return np.where(explore, random, greedy)


def epsilon_draws(
    epsilon: float, rng: np.random.Generator, num_envs: int, n_actions: int
) -> tuple[np.ndarray, np.ndarray]:
    """One vector step's ε draws: which envs explore (bool (E,)) and a uniform action for each (int64 (E,))."""
    return rng.random(num_envs) < epsilon, rng.integers(n_actions, size=num_envs, dtype=np.int64)
