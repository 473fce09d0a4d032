"""IQN / Munchausen-IQN losses and the CQL(H) regulariser, as pure torch functions.

Conventions: B = batch, N = online quantile samples (taus), N' = target quantile samples, A = actions.
Targets are built under ``torch.no_grad`` from target-network outputs; the loss functions detach the
target again so a caller mistake cannot leak gradient into it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cql_regulariser",
    "iqn_target",
    "munchausen_iqn_target",
    "quantile_huber_loss",
    "quantile_td_priority",
    "scaled_log_policy",
]


def quantile_huber_loss(pred: Tensor, target: Tensor, taus: Tensor, kappa: float = 1.0) -> Tensor:
    """Per-sample IQN quantile Huber loss (Dabney et al. 2018, as in BTR's Agent.py), shape (B,).

    ``pred`` (B, N): online quantiles of the taken action at ``taus`` (B, N); ``target`` (B, N').
    With ``u_ij = target_j - pred_i`` and Huber ``L_k(u) = u^2/2 if |u| <= k else k(|u| - k/2)``::

        loss_b = sum_i mean_j |tau_i - 1{u_ij < 0}| * L_k(u_ij) / k

    (sum over the online taus, mean over the target samples). ``kappa`` must be > 0.
    """
    if kappa <= 0:
        raise ValueError(f"kappa must be > 0, got {kappa}")
    if pred.dim() != 2 or target.dim() != 2 or taus.shape != pred.shape:
        raise ValueError(
            f"expected pred (B,N), target (B,N'), taus (B,N); got {tuple(pred.shape)}, "
            f"{tuple(target.shape)}, {tuple(taus.shape)}"
        )
    u = target.detach().unsqueeze(1) - pred.unsqueeze(2)  # (B, N, N')
    huber = F.huber_loss(u, torch.zeros_like(u), reduction="none", delta=kappa)
    weight = (taus.detach().unsqueeze(2) - (u.detach() < 0).to(u.dtype)).abs()
    return (weight * huber / kappa).sum(dim=1).mean(dim=1)


@torch.no_grad()
def quantile_td_priority(pred: Tensor, target: Tensor) -> Tensor:
    """BTR's PER priority signal (before ``+eps`` and ``**alpha``): ``sum_i mean_j |target_j - pred_i|``, (B,)."""
    u = target.unsqueeze(1) - pred.unsqueeze(2)
    return u.abs().sum(dim=1).mean(dim=1)


def scaled_log_policy(q: Tensor, temperature: float) -> Tensor:
    """``tau * log softmax(q / tau)`` over the last dim, i.e. ``q - max q - tau * logsumexp((q - max q)/tau)``."""
    return temperature * F.log_softmax(q / temperature, dim=-1)


@torch.no_grad()
def munchausen_iqn_target(
    next_quantiles: Tensor,
    q_current: Tensor,
    actions: Tensor,
    returns: Tensor,
    discounts: Tensor,
    entropy_tau: float = 0.03,
    alpha: float = 0.9,
    l0: float = -1.0,
) -> Tensor:
    """Munchausen-IQN target quantiles (Vieillard et al. 2020; BTR), shape (B, N').

    Inputs: ``next_quantiles`` (B, N', A) target-network quantiles at the bootstrap state s';
    ``q_current`` (B, A) mean-over-tau Q at the start state s (the network that defines the current
    policy for the Munchausen bonus: BTR's ICML code uses the online net, M-IQN the target net --
    the caller chooses); ``actions`` (B,) the first action a_t; ``returns`` (B,) the n-step reward
    sum ``R = sum_{k<m} gamma^k r_{t+k}``; ``discounts`` (B,) ``gamma^m``, or 0 on termination.

    With ``q' = mean_tau next_quantiles`` and ``pi' = softmax(q'/entropy_tau)``::

        soft_j  = sum_a pi'(a) * (Z_j(s', a) - entropy_tau * log pi'(a|s'))
        bonus   = alpha * clip(entropy_tau * log pi(a_t|s_t), l0, 0),  pi = softmax(q_current/entropy_tau)
        target_j = R + bonus + discount * soft_j

    n-step detail (as in BTR and the M-DQN/M-IQN n-step code): the Munchausen bonus is added once,
    for the first action a_t only and undiscounted; the entropy terms of the intermediate actions
    a_{t+1..t+m-1} are not included (their policies are not re-evaluated), and the soft bootstrap
    is discounted by ``discount`` = gamma^m.
    """
    q_next = next_quantiles.mean(dim=1)  # (B, A)
    tau_log_pi_next = scaled_log_policy(q_next, entropy_tau)  # (B, A)
    pi_next = F.softmax(q_next / entropy_tau, dim=-1)
    soft_next = (pi_next.unsqueeze(1) * (next_quantiles - tau_log_pi_next.unsqueeze(1))).sum(
        dim=-1
    )  # (B, N')

    tau_log_pi = scaled_log_policy(q_current, entropy_tau).gather(1, actions.long().view(-1, 1)).squeeze(1)
    bonus = alpha * tau_log_pi.clamp(min=l0, max=0.0)
    reward = (returns.to(soft_next.dtype) + bonus.to(soft_next.dtype)).unsqueeze(1)
    return reward + discounts.to(soft_next.dtype).unsqueeze(1) * soft_next


@torch.no_grad()
def iqn_target(
    next_quantiles: Tensor, returns: Tensor, discounts: Tensor, next_q_select: Tensor | None = None
) -> Tensor:
    """Plain IQN target (no Munchausen), shape (B, N'): ``R + discount * Z_j(s', a*)``.

    ``a* = argmax_a next_q_select`` (B, A) if given (e.g. the online net's Q for double-DQN style
    selection), else the argmax of the mean of ``next_quantiles`` (B, N', A) itself.
    """
    select = next_quantiles.mean(dim=1) if next_q_select is None else next_q_select
    a_star = select.argmax(dim=-1)  # (B,)
    z = next_quantiles.gather(2, a_star.view(-1, 1, 1).expand(-1, next_quantiles.shape[1], 1)).squeeze(2)
    return returns.to(z.dtype).unsqueeze(1) + discounts.to(z.dtype).unsqueeze(1) * z


def cql_regulariser(q: Tensor, actions: Tensor) -> Tensor:
    """CQL(H) term per sample (Kumar et al. 2020), shape (B,): ``logsumexp_a q(s, a) - q(s, a_data)``."""
    return torch.logsumexp(q, dim=-1) - q.gather(1, actions.long().view(-1, 1)).squeeze(1)
