"""The RISE update as one pure function: ``loss(online, target, batch, config) -> (loss, priorities, stats)``.

Per call (BTR's ``learn_call``, arXiv 2411.03820 App. E.2, with RISE's context inputs):

1. Fresh parameter noise on the online and then the target network; the online taus (B, N), then the
   target taus (B, N') -- or (2B, N') for the stacked [s'; s_t] of ``munchausen_policy="target"``.
2. Target (no grad): the target network's quantiles Z(s', .) at its taus.
3. Online: encode s_t once; its N quantiles give the quantile Huber loss of a_t, the mean-over-tau
   Q(s_t, .) for the CQL(H) term and, detached, the Munchausen policy pi(.|s_t) -- as BTR's code does
   (VIPTankz/Wii-RL BTR.py:1019-1049 reuses the online forward; the ICLR code, Agent.py:567, makes a
   second online pass). ``munchausen_policy="target"`` is standard M-IQN (Vieillard et al. 2020).
4. ``munchausen_iqn_target`` builds the N' target quantiles from Z(s') and the bonus
   ``alpha * clip(tau log pi(a_t|s_t), l0, 0)``; ``loss = mean(w * huber) + cql_alpha * mean(cql)``.

The forwards draw no random numbers (noise and taus are drawn in step 1), so the target forward may run
before, or on CUDA beside, the online one with the same numbers. ``precision="bf16"`` runs both forwards
under bf16 autocast; the losses stay float32. Priorities for PER are BTR's ``sum_i mean_j |target_j -
pred_i|`` (the replay adds eps and ^alpha). Side effects: the noise buffers, and the online network's
spectral-norm vectors, which power-iterate once per training-mode forward as in BTR.
"""

from __future__ import annotations

import contextlib
import functools
from typing import NamedTuple

import torch
from torch import Tensor

from rise_agent.learner_config import LearnerConfig
from rise_agent.losses import (
    cql_regulariser,
    iqn_target,
    munchausen_iqn_target,
    quantile_huber_loss,
    quantile_td_priority,
)
from rise_agent.network import Encoded, RiseNetwork
from rise_agent.replay.config import Batch

__all__ = ["State", "Stats", "loss", "state", "stacks_target_policy", "target_quantiles", "target_values"]

GATE_LOW, GATE_HIGH = 0.05, 0.95  # a gate value outside [0.05, 0.95] counts as saturated


class Stats(NamedTuple):
    """The update's statistics, 0-d float32 tensors on the device (no host sync).

    td: mean PER priority signal; cql: the weighted CQL term in the loss (0 when off); q_mean: mean
    online Q(s_t, .); gate_mean / gate_saturation: mean of the RISE gate sigmoid(Omega(h)) and the share
    of its values < 0.05 or > 0.95 (a saturated gate is the failure signature to watch for), NaN without a
    multiplicative gate; lstm_mean / lstm_std: of the context LSTM's h_{K-1} over the batch (a collapsed
    context stream shows as a std near 0), NaN when K = 0.
    """

    loss: Tensor
    td: Tensor
    cql: Tensor
    q_mean: Tensor
    gate_mean: Tensor
    gate_saturation: Tensor
    lstm_mean: Tensor
    lstm_std: Tensor


class State(NamedTuple):
    """One side of a transition on the device: frames, and the context and its mask (None when K = 0)."""

    frames: Tensor
    context: Tensor | None
    mask: Tensor | None


def state(batch: Batch, prefix: str, net: RiseNetwork) -> State:
    """The batch's s_t (prefix "") or s' (prefix "next_") on ``net``'s device."""
    device = net.cos_freqs.device
    frames = getattr(batch, f"{prefix}frames").to(device, non_blocking=True)
    if net.config.context_len == 0:
        return State(frames, None, None)
    context, mask = getattr(batch, f"{prefix}context"), getattr(batch, f"{prefix}mask")
    if context is None:
        raise ValueError(f"batch.{prefix}context is required for context_len > 0")
    # stored embeddings are inputs, never trained: cut any graph a caller may have attached
    context = context.detach().to(device, non_blocking=True)
    if mask is None:
        mask = torch.ones(context.shape[:2], dtype=torch.bool, device=device)
    return State(frames, context, mask.to(device, non_blocking=True))


def _stacked(a: State, b: State) -> State:
    frames = torch.cat([a.frames, b.frames])
    if a.context is None or b.context is None or a.mask is None or b.mask is None:
        return State(frames, None, None)  # K = 0: state() gives context and mask together or neither
    return State(frames, torch.cat([a.context, b.context]), torch.cat([a.mask, b.mask]))


def autocast(config: LearnerConfig, device: torch.device):
    """bf16 autocast for ``precision="bf16"`` (no weight cache under a CUDA graph), else nothing."""
    if config.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not config.cuda_graph)
    return contextlib.nullcontext()


def stacks_target_policy(config: LearnerConfig) -> bool:
    """True when the target network scores s_t too (M-IQN's policy), stacked below s' in one pass."""
    return config.munchausen and config.munchausen_policy == "target"


@torch.no_grad()
def target_quantiles(
    target: RiseNetwork, batch: Batch, config: LearnerConfig, stack: bool, taus: Tensor | None
) -> Tensor:
    """The target network's quantiles of s' (and of s_t below them when ``stack``), float32.

    ``taus``: (B, N'), or (2B, N') when stacked; sampled when None."""
    s = state(batch, "next_", target)
    if stack:
        s = _stacked(s, state(batch, "", target))
    with autocast(config, s.frames.device):
        quantiles, _ = target(*s, n_tau=config.n_tau_target, taus=taus)
    return quantiles.float()


@torch.no_grad()
def target_values(
    batch: Batch, quantiles: Tensor, config: LearnerConfig, q_policy: Tensor | None, online: RiseNetwork
) -> Tensor:
    """Target quantiles (B, N') from the target network's ``quantiles`` (see :func:`target_quantiles`).

    ``q_policy`` (B, A): the Q(s_t, .) whose softmax is the Munchausen policy. When None it comes from the
    stacked rows of ``quantiles`` (``munchausen_policy="target"``, stacked) or from a separate no-grad
    pass of ``online`` ("online").
    """
    c = config
    device = quantiles.device
    returns = batch.returns.to(device, torch.float32)
    discount = batch.discount.to(device, torch.float32)
    if not c.munchausen:
        # without Munchausen BTR bootstraps from the target's own greedy action (no double DQN)
        return iqn_target(quantiles, returns, discount)
    if stacks_target_policy(c) and q_policy is None:
        b = quantiles.shape[0] // 2
        quantiles, q_policy = quantiles[:b], quantiles[b:].mean(dim=1)
    elif q_policy is None:
        with autocast(c, device):
            q_policy = online.q_values(*state(batch, "", online), n_tau=c.n_tau).float()
    action = batch.action.to(device)
    return munchausen_iqn_target(
        quantiles,
        q_policy.float(),
        action,
        returns,
        discount,
        entropy_tau=c.m_tau,
        alpha=c.m_alpha,
        l0=c.m_l0,
    )


@functools.cache
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device)


def _side(config: LearnerConfig, device: torch.device) -> torch.cuda.Stream | None:
    """CUDA ``target_stream``: the second stream the target forward runs on, beside the online one."""
    if not (config.target_stream and device.type == "cuda"):
        return None
    side = _side_stream(device)
    side.wait_stream(torch.cuda.current_stream(device))  # after the inputs' uploads
    return side


def loss(
    online: RiseNetwork, target: RiseNetwork, batch: Batch, config: LearnerConfig
) -> tuple[Tensor, Tensor, Stats]:
    """The M-IQN (+CQL) loss of one batch: (loss 0-d, priorities (B,) float32, :class:`Stats`).

    ``batch`` has frames, context, mask, action, returns, discount, weights and next_frames /
    next_context / next_mask (context and mask None when K = 0). Only ``loss`` carries a gradient.
    """
    c = config
    online.reset_noise()
    target.reset_noise()
    s = state(batch, "", online)
    device, b = s.frames.device, s.frames.shape[0]
    action = batch.action.to(device).long()
    weights = batch.weights.to(device, torch.float32)
    taus = online.sample_taus(b, c.n_tau, device)
    target_taus = target.sample_taus(2 * b if stacks_target_policy(c) else b, c.n_tau_target, device)
    side = _side(c, device)
    with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
        target_q = target_quantiles(target, batch, c, stacks_target_policy(c), target_taus)
    with autocast(c, device):
        enc = online.encode_aux(*s)
        quantiles, _ = online.quantiles(enc.z, c.n_tau, taus)
    quantiles = quantiles.float()  # (B, N, A)
    q = quantiles.mean(dim=1)  # (B, A)
    if side is not None:
        torch.cuda.current_stream(device).wait_stream(side)
        target_q.record_stream(torch.cuda.current_stream(device))
    policy = q.detach() if c.munchausen and c.munchausen_policy == "online" else None
    target_z = target_values(batch, target_q, c, policy, online)
    pred = quantiles.gather(2, action.view(-1, 1, 1).expand(-1, quantiles.shape[1], 1)).squeeze(2)  # (B, N)
    total = (weights * quantile_huber_loss(pred, target_z, taus, c.kappa)).mean()
    cql = torch.zeros((), device=device)
    if c.cql_alpha > 0:
        cql = c.cql_alpha * cql_regulariser(q, action).mean()
        total = total + cql
    priority = quantile_td_priority(pred.detach(), target_z)
    return total, priority, _stats(total, priority, cql, q, enc)


@torch.no_grad()
def _stats(total: Tensor, priority: Tensor, cql: Tensor, q: Tensor, enc: Encoded) -> Stats:
    nan = torch.full((), float("nan"), device=q.device)
    gate = enc.gate.float() if enc.gate is not None else None
    lstm = enc.lstm.float() if enc.lstm is not None else None
    return Stats(
        loss=total.detach(),
        td=priority.mean(),
        cql=cql.detach(),
        q_mean=q.mean(),
        gate_mean=gate.mean() if gate is not None else nan,
        gate_saturation=((gate < GATE_LOW) | (gate > GATE_HIGH)).float().mean() if gate is not None else nan,
        lstm_mean=lstm.mean() if lstm is not None else nan,
        lstm_std=lstm.std() if lstm is not None else nan,
    )
