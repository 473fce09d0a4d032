"""rise_agent.losses against naive loops and hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from rise_agent.losses import (
    cql_regulariser,
    iqn_target,
    munchausen_iqn_target,
    quantile_huber_loss,
    quantile_td_priority,
    scaled_log_policy,
)


def naive_quantile_huber(pred, target, taus, kappa):
    b, n = pred.shape
    out = []
    for s in range(b):
        total = 0.0
        for i in range(n):
            acc = 0.0
            for j in range(target.shape[1]):
                u = float(target[s, j] - pred[s, i])
                h = 0.5 * u * u if abs(u) <= kappa else kappa * (abs(u) - 0.5 * kappa)
                acc += abs(float(taus[s, i]) - (1.0 if u < 0 else 0.0)) * h / kappa
            total += acc / target.shape[1]
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("kappa", [1.0, 0.5, 2.0])
def test_quantile_huber_matches_loop(kappa):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(5, 8, generator=g, dtype=torch.float64) * 2
    target = torch.randn(5, 6, generator=g, dtype=torch.float64) * 2
    taus = torch.rand(5, 8, generator=g, dtype=torch.float64)
    got = quantile_huber_loss(pred, target, taus, kappa)
    assert got.shape == (5,)
    torch.testing.assert_close(got, naive_quantile_huber(pred, target, taus, kappa))


def test_quantile_huber_hand_example_and_gradient():
    # one online quantile at tau=0.25, targets 2 (u=+2, linear part) and -0.5 (u=-0.5, quadratic part)
    pred = torch.tensor([[0.0]], requires_grad=True)
    target = torch.tensor([[2.0, -0.5]], requires_grad=True)
    taus = torch.tensor([[0.25]])
    loss = quantile_huber_loss(pred, target, taus)
    expect = (0.25 * (2 - 0.5) + 0.75 * 0.125) / 2
    assert loss.item() == pytest.approx(expect)
    loss.sum().backward()
    assert target.grad is None  # the target is detached
    # d/dpred: j=1: -0.25*1, j=2: 0.75*0.5 ; mean over j
    assert pred.grad.item() == pytest.approx((-0.25 + 0.375) / 2)


def test_quantile_td_priority():
    pred = torch.tensor([[0.0, 1.0]])
    target = torch.tensor([[1.0, 3.0, -1.0]])
    # i=0: |1|,|3|,|1| mean 5/3 ; i=1: 0,2,2 mean 4/3 -> sum 3
    assert quantile_td_priority(pred, target).item() == pytest.approx(3.0)


def test_scaled_log_policy():
    q = torch.tensor([[1.0, 2.0, 0.5]])
    t = 0.03
    expect = q - q.max() - t * torch.logsumexp((q - q.max()) / t, dim=-1, keepdim=True)
    torch.testing.assert_close(scaled_log_policy(q, t), expect)


def naive_munchausen(next_z, q_cur, actions, returns, discounts, t, alpha, l0):
    b, n, a = next_z.shape
    out = torch.zeros(b, n, dtype=torch.float64)
    for s in range(b):
        qn = [sum(float(next_z[s, j, k]) for j in range(n)) / n for k in range(a)]
        m = max(qn)
        lse = math.log(sum(math.exp((x - m) / t) for x in qn))
        pi = [math.exp((x - m) / t - lse) for x in qn]
        tlogpi = [x - m - t * lse for x in qn]
        qc = [float(x) for x in q_cur[s]]
        mc = max(qc)
        lse_c = math.log(sum(math.exp((x - mc) / t) for x in qc))
        tlogpi_a = qc[int(actions[s])] - mc - t * lse_c
        bonus = alpha * min(max(tlogpi_a, l0), 0.0)
        for j in range(n):
            soft = sum(pi[k] * (float(next_z[s, j, k]) - tlogpi[k]) for k in range(a))
            out[s, j] = float(returns[s]) + bonus + float(discounts[s]) * soft
    return out


def test_munchausen_target_matches_loop():
    g = torch.Generator().manual_seed(1)
    b, n, a = 6, 8, 5
    next_z = torch.randn(b, n, a, generator=g, dtype=torch.float64)
    q_cur = torch.randn(b, a, generator=g, dtype=torch.float64) * 0.05  # some bonuses inside (l0, 0)
    q_cur[0] = torch.tensor([0.0, 5.0, 5.0, 5.0, 5.0], dtype=torch.float64)  # a=0 clipped at l0
    actions = torch.randint(0, a, (b,), generator=g)
    actions[0] = 0
    returns = torch.randn(b, generator=g, dtype=torch.float64)
    discounts = torch.tensor([0.997**3, 0.0, 0.997, 0.997**3, 0.0, 0.997**2], dtype=torch.float64)
    got = munchausen_iqn_target(next_z, q_cur, actions, returns, discounts, 0.03, 0.9, -1.0)
    assert got.shape == (b, n) and not got.requires_grad
    torch.testing.assert_close(
        got, naive_munchausen(next_z, q_cur, actions, returns, discounts, 0.03, 0.9, -1.0)
    )
    # terminal samples (discount 0) carry only reward + bonus, the same for every target quantile
    assert (got[1] == got[1, 0]).all() and (got[4] == got[4, 0]).all()
    # sample 0: tau log pi(a=0) ~ -5 is clipped to l0, so the bonus is alpha * l0
    no_boot = munchausen_iqn_target(next_z, q_cur, actions, returns, torch.zeros(b, dtype=torch.float64))
    torch.testing.assert_close(no_boot[0], (returns[0] - 0.9).expand(n))
    assert ((no_boot - returns[:, None]) <= 0).all() and ((no_boot - returns[:, None]) >= -0.9 - 1e-12).all()


def test_munchausen_greedy_limit():
    # a very sharp target policy makes the soft bootstrap the max-action quantiles, and the bonus 0
    # for the greedy action: M-IQN reduces to R + discount * Z_j(s', argmax)
    next_z = torch.tensor([[[1.0, 3.0], [2.0, 5.0]]])
    q_cur = torch.tensor([[0.0, 10.0]])
    got = munchausen_iqn_target(
        next_z, q_cur, torch.tensor([1]), torch.tensor([0.5]), torch.tensor([0.9]), entropy_tau=1e-3
    )
    torch.testing.assert_close(got, torch.tensor([[0.5 + 0.9 * 3.0, 0.5 + 0.9 * 5.0]]))
    # the non-greedy action gets the clipped bonus alpha * l0
    got = munchausen_iqn_target(
        next_z, q_cur, torch.tensor([0]), torch.tensor([0.5]), torch.tensor([0.0]), entropy_tau=1e-3
    )
    torch.testing.assert_close(got, torch.tensor([[0.5 - 0.9, 0.5 - 0.9]]))


def test_iqn_target():
    next_z = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[4.0, 0.0], [4.0, 1.0]]])
    got = iqn_target(next_z, torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(got, torch.tensor([[1 + 1.5, 1 + 2.5], [2.0, 2.0]]))
    got = iqn_target(
        next_z, torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    )
    torch.testing.assert_close(got, torch.tensor([[1.0, 2.0], [0.0, 1.0]]))


def test_cql_regulariser():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(7, 4, generator=g, dtype=torch.float64)
    actions = torch.randint(0, 4, (7,), generator=g)
    got = cql_regulariser(q, actions)
    naive = [math.log(sum(math.exp(float(x)) for x in q[s])) - float(q[s, actions[s]]) for s in range(7)]
    torch.testing.assert_close(got, torch.tensor(naive, dtype=torch.float64))
    assert (got > 0).all()
    # hand example: uniform q -> log A
    assert cql_regulariser(torch.zeros(1, 4), torch.tensor([2])).item() == pytest.approx(math.log(4))
