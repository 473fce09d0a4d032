"""rise_agent.network.lstm_loop, the context LSTM a compiled update traces: nn.LSTM's forward and gradients
step for step, the context stream's two maskings through it, and the Learner's choice of it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from rise_agent.learner import Learner, LearnerConfig
from rise_agent.network import ContextStream, NetworkConfig, lstm_loop

B, D, H, A = 6, 12, 10, 3
TOL = dict(rtol=1e-5, atol=1e-6)


def _params(lstm: nn.LSTM) -> list[torch.Tensor]:
    return [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]


def _grads(out: torch.Tensor, x: torch.Tensor, params: list[torch.Tensor], probe: torch.Tensor) -> list:
    """Gradients of a random projection of ``out`` (every element weighted differently) w.r.t. x and params."""
    return list(torch.autograd.grad((out * probe).sum(), [x, *params]))


def _random_lstm(seed: int) -> nn.LSTM:
    torch.manual_seed(seed)
    lstm = nn.LSTM(D, H, batch_first=True)
    with torch.no_grad():  # biases as large as chrono's, so the gates are not all near 0.5
        for p in _params(lstm):
            p.uniform_(-1.0, 1.0)
    return lstm


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_loop_equals_nn_lstm_forward_and_backward(k):
    lstm = _random_lstm(k)
    x = torch.randn(B, k, D, requires_grad=True)
    out, (h_n, c_n) = lstm(x)
    h, c = lstm_loop(x, *_params(lstm))
    torch.testing.assert_close(h, h_n[0], **TOL)
    torch.testing.assert_close(h, out[:, -1], **TOL)
    torch.testing.assert_close(c, c_n[0], **TOL)
    probe = torch.randn(B, H)
    want = _grads(h_n[0], x, _params(lstm), probe)
    got = _grads(h, x, _params(lstm), probe)
    for name, g, w in zip(["x", "w_ih", "w_hh", "b_ih", "b_hh"], got, want, strict=True):
        torch.testing.assert_close(g, w, **TOL, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("k", [1, 4, 16])
def test_masked_loop_equals_nn_lstm_on_each_rows_valid_steps(k):
    """Left-padded rows: skipping the masked steps gives nn.LSTM run on the valid suffix alone, and its
    gradients (zero for the inputs of skipped steps)."""
    lstm = _random_lstm(100 + k)
    x = torch.randn(B, k, D, requires_grad=True)
    valid = torch.randint(1, k + 1, (B,))
    valid[0] = k
    mask = torch.arange(k)[None, :] >= (k - valid)[:, None]
    h, _ = lstm_loop(x, *_params(lstm), mask=mask)
    probe = torch.randn(B, H)
    got = _grads(h, x, _params(lstm), probe)
    want_h, want = [], [torch.zeros_like(x)] + [torch.zeros_like(p) for p in _params(lstm)]
    for b in range(B):
        row = x[b : b + 1, k - int(valid[b]) :]
        _, (h_n, _) = lstm(row)
        want_h.append(h_n[0, 0])
        for acc, g in zip(want, _grads(h_n[0], x, _params(lstm), probe[b : b + 1]), strict=True):
            acc += g
    torch.testing.assert_close(h, torch.stack(want_h), **TOL)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOL)


def _stream(masking: str, proj: int, seed: int = 0) -> ContextStream:
    torch.manual_seed(seed)
    config = NetworkConfig(
        n_actions=A, context_len=8, embed_dim=D, lstm_hidden=H, context_masking=masking, context_proj=proj
    )  # type: ignore[arg-type]  # a Literal from a parameter
    return ContextStream(config)


@pytest.mark.parametrize("masking", ["zero", "pack"])
@pytest.mark.parametrize("proj", [0, 7])
def test_stream_through_the_loop_equals_the_stream_through_nn_lstm(masking, proj):
    """The same parameters (the loop layout adds none), the same h_{K-1} and gradients, with the stream's
    own masking: garbage in masked slots, a row with no valid slot, a fully valid row, a mask-less call."""
    k = 8
    eager, traced = _stream(masking, proj), _stream(masking, proj, seed=1)
    traced.load_state_dict(eager.state_dict())
    traced.set_layout(0, None, loop=True)
    assert list(traced.state_dict()) == list(eager.state_dict())
    ctx = torch.randn(B, k, D)
    valid = torch.tensor([k, 1, 3, 0, 5, 8])
    mask = torch.arange(k)[None, :] >= (k - valid)[:, None]
    ctx[~mask] = 1e3  # what a stream must never see
    for m in (mask, None):
        probe = torch.randn(B, H)
        outs, grads = [], []
        for stream in (eager, traced):
            out = stream(ctx, m)
            outs.append(out)
            grads.append(torch.autograd.grad((out * probe).sum(), list(stream.parameters())))
        torch.testing.assert_close(outs[1], outs[0], **TOL)
        for g1, g0 in zip(grads[1], grads[0], strict=True):
            torch.testing.assert_close(g1, g0, **TOL)


def _batch(k: int, b: int = 8, d: int = D) -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)

    def ctx():
        valid = torch.randint(1, k + 1, (b,), generator=g)
        mask = torch.arange(k)[None, :] >= (k - valid)[:, None]
        return (torch.randn(b, k, d, generator=g) * mask[..., None]).half(), mask

    (c, m), (nc, nm) = ctx(), ctx()
    return SimpleNamespace(
        frames=torch.randint(0, 256, (b, 4, 16, 16), dtype=torch.uint8, generator=g),
        context=c,
        mask=m,
        action=torch.randint(0, A, (b,), generator=g),
        returns=torch.randn(b, generator=g),
        discount=torch.full((b,), 0.99),
        next_frames=torch.randint(0, 256, (b, 4, 16, 16), dtype=torch.uint8, generator=g),
        next_context=nc,
        next_mask=nm,
        weights=torch.ones(b),
        index=np.arange(b, dtype=np.int64),
    )


@pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning")  # importing dynamo
def test_the_learner_traces_the_lstm_only_when_it_compiles():
    """compile=True puts both networks' context streams on the loop (torch.compile builds lazily, so no
    compile happens here); the eager update through the loop equals the nn.LSTM update."""
    k = 6
    net = NetworkConfig(
        n_actions=A, context_len=k, embed_dim=D, lstm_hidden=H, impala_channels=(4, 4, 4), frame_hw=(16, 16),
        pool_size=2, hidden=16,
    )  # fmt: skip
    plain = Learner(net, LearnerConfig(), "cpu")
    assert not plain.online.context.loop and not plain.target.context.loop
    compiled = Learner(net, LearnerConfig(compile=True), "cpu")
    assert compiled.online.context.loop and compiled.target.context.loop
    results = []
    for loop in (False, True):
        torch.manual_seed(0)
        learner = Learner(net, LearnerConfig(), "cpu")
        for n in (learner.online, learner.target):
            n.set_layout(False, 0, None, lstm_traceable=loop)
        torch.manual_seed(1)
        metrics, prio = learner.step(_batch(k))
        results.append((metrics, prio, [p.detach().clone() for p in learner.online.parameters()]))
    (m0, p0, w0), (m1, p1, w1) = results
    for key in m0:
        assert m1[key] == pytest.approx(m0[key], rel=1e-5, abs=1e-6, nan_ok=True), key
    np.testing.assert_allclose(p1, p0, rtol=1e-5, atol=1e-6)
    for a, b in zip(w1, w0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning")  # importing dynamo
@pytest.mark.filterwarnings(
    "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"
)  # dynamo's
def test_the_compiled_update_has_no_rnn_graph_break(monkeypatch):
    """Dynamo walks the Learner's compiled update without an RNN graph break (at nn.LSTM's forward or at any
    .modules()/.parameters() walk past the module holding its weights); the eager backend, so only dynamo runs."""
    import torch._dynamo

    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compile_(fn, backend="eager", **kw))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    k = 4
    net = NetworkConfig(
        n_actions=A, context_len=k, embed_dim=D, lstm_hidden=H, impala_channels=(4, 4, 4), frame_hw=(16, 16),
        pool_size=2, hidden=16,
    )  # fmt: skip
    try:
        Learner(net, LearnerConfig(compile=True), "cpu").step(_batch(k))
        breaks = dict(torch._dynamo.utils.counters["graph_break"])
    finally:
        torch._dynamo.reset()
    assert breaks, "no graph break at all: the counter is not being read"  # backward and fused Adam break
    assert not [reason for reason in breaks if "RNN" in reason], breaks
