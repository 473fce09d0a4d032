"""Acting in vector envs with the same frame-stack and context definition the replay trains on.

Per env the actor keeps the last ``frame_stack`` agent observations and the last K frozen-encoder
embeddings of the *current* episode in device ring buffers. Windows are left-padded, current frame
last; before the episode start the frame stack repeats the episode's first frame (BTR's FrameStack)
and the context window holds zeros with mask False -- exactly what
:func:`rise_data.windows.frame_stack_indices` / :func:`~rise_data.windows.context_window` give the
replay, and embeddings are kept in float16 as the replay stores them, so the network sees the same
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

__all__ = ["Actor", "epsilon_schedule"]


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
    """(E, L, ...) ring buffer shared by all envs (they step together), with per-env episode lengths."""

    def __init__(self, num_envs: int, length: int, item_shape: tuple[int, ...], dtype, device) -> None:
        self.length = length
        self.buf = torch.zeros((num_envs, length, *item_shape), dtype=dtype, device=device)
        self.count = torch.zeros(num_envs, dtype=torch.long, device=device)  # steps of the current episode
        self.head = -1  # slot of the newest item
        self.slots = torch.arange(length, device=device)

    def push(self, items: Tensor, first: Tensor) -> None:
        self.head = (self.head + 1) % self.length
        self.count = torch.where(first, 0, self.count) + 1
        self.buf[:, self.head] = items

    def read(self, repeat_first: bool = False) -> tuple[Tensor, Tensor]:
        """Oldest-first window (E, L, ...) and its valid mask (E, L); before the episode start zeros, or
        with ``repeat_first`` the episode's first item (BTR's frame-stack padding)."""
        first = self.length - self.count.clamp(max=self.length)  # position of the episode's first item
        valid = self.slots.unsqueeze(0) >= first.unsqueeze(1)
        if repeat_first:
            pos = torch.maximum(self.slots.unsqueeze(0), first.unsqueeze(1))  # (E, L)
            slot = (pos + self.head + 1) % self.length
            return self.buf[torch.arange(self.buf.shape[0], device=slot.device).unsqueeze(1), slot], valid
        order = (self.slots + self.head + 1) % self.length  # slot of position j, current item last
        window = self.buf[:, order]
        shape = valid.shape + (1,) * (window.dim() - 2)
        return torch.where(valid.view(shape), window, 0), valid


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
        if k > 0 and encoder is None:
            raise ValueError("context_len > 0 needs the frozen encoder that made the stored embeddings")
        if k > 0 and encoder.dim != cfg.embed_dim:
            raise ValueError(
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
        first = torch.from_numpy(np.asarray(step.is_first, dtype=bool)).to(self.device)
        if not self._seen and not bool(first.all()):
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
        if self._context is None:
            return None
        source = self.encoder.preprocessing.source
        rows = (step.frame if frame is None else frame) if source == "frame" else obs
        if rows is None:
            raise ValueError(f"encoder {self.encoder.name} reads RGB frames, but the env returns none")
        emb = self.encoder(rows if isinstance(rows, Tensor) else np.asarray(rows)).to(
            self.device, torch.float16
        )
        self._context.push(emb, first)
        return emb

    def frames(self) -> Tensor:
        """uint8 (E, frame_stack, H, W), oldest first, the episode's first frame repeated before its start."""
        return self._frames.read(repeat_first=True)[0]

    def context(self) -> tuple[Tensor | None, Tensor | None]:
        """float16 (E, K, D) and bool (E, K): left-padded, current frame last; (None, None) when K = 0."""
        if self._context is None:
            return None, None
        return self._context.read()

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
        actions = self.greedy(greedy_noise_off).cpu().numpy().astype(np.int64)
        explore = rng.random(self.num_envs) < epsilon
        if explore.any():
            actions[explore] = rng.integers(self.n_actions, size=int(explore.sum()))
        return actions
