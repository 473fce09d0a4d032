"""rise_agent.learner: loss goes down, target copies, no gradient into stored context, CQL, M-IQN target,
BTR's Munchausen policy from the online forward, bf16 autocast agreeing with fp32."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import rise_agent.update as update_module
from rise_agent.learner import METRICS, Learner, LearnerConfig
from rise_agent.network import NetworkConfig
from rise_agent.training.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from rise_agent.training.precision import bf16_lstm_supported

B, A, K, D = 8, 4, 8, 16
NEEDS_BF16_LSTM = pytest.mark.skipif(
    not bf16_lstm_supported("cpu"),
    reason="this CPU's oneDNN cannot run a bf16 LSTM; --precision bf16 is refused there",
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_config(k: int) -> NetworkConfig:
    return NetworkConfig(
        n_actions=A, context_len=k, embed_dim=D, lstm_hidden=32, impala_channels=(8, 8, 8), hidden=32
    )


def make_batch(k: int, b: int = B, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)

    def frames():
        # coarse 7x7 patterns blown up to 84x84: pixel noise would look alike to every sample after max-pooling
        coarse = torch.randint(0, 256, (b, 4, 7, 7), dtype=torch.uint8, generator=g)
        return coarse.repeat_interleave(12, dim=2).repeat_interleave(12, dim=3)

    def ctx():
        if k == 0:
            return None, None
        valid = torch.randint(1, k + 1, (b,), generator=g)
        mask = torch.arange(k)[None, :] >= (k - valid)[:, None]  # left-padded, current frame last
        return (torch.randn(b, k, D, generator=g) * mask[..., None]).half(), mask

    c, m = ctx()
    nc, nm = ctx()
    return SimpleNamespace(
        frames=frames(),
        context=c,
        mask=m,
        action=torch.randint(0, A, (b,), generator=g),
        returns=torch.randn(b, generator=g),
        discount=torch.where(torch.rand(b, generator=g) < 0.25, 0.0, 0.997**3),
        next_frames=frames(),
        next_context=nc,
        next_mask=nm,
        weights=torch.rand(b, generator=g) + 0.5,
        index=np.arange(b, dtype=np.int64),
    )


@pytest.mark.parametrize("k", [0, K])
def test_loss_decreases_on_a_fixed_batch(k):
    learner = Learner(small_config(k), LearnerConfig(lr=3e-3, target_update=10_000), "cpu")
    batch = make_batch(k)
    # no bootstrap: the target collapses to R + bonus, so the loss can fall towards 0 (a bootstrapped
    # target keeps an irreducible quantile-loss floor from the target distribution's spread)
    batch.discount = torch.zeros(B)
    losses = []
    for _ in range(30):
        metrics, prio = learner.step(batch)
        losses.append(metrics["loss"])
        assert set(metrics) == set(METRICS)
        assert prio.shape == (B,) and prio.dtype == np.float32 and np.isfinite(prio).all()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert learner.updates == 30
    if k:
        assert 0.0 < metrics["gate_mean"] < 1.0 and 0.0 <= metrics["gate_saturation"] <= 1.0
    else:
        assert math.isnan(metrics["gate_mean"]) and math.isnan(metrics["gate_saturation"])
    assert all(math.isfinite(metrics[key]) for key in ("loss", "td", "q_mean", "grad_norm"))


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return all(torch.equal(pa[n], pb[n]) for n in pa)


def test_target_copied_exactly_every_target_update():
    learner = Learner(small_config(K), LearnerConfig(lr=1e-3, target_update=3), "cpu")
    assert _same(learner.online, learner.target)  # starts as a copy
    batch = make_batch(K)
    for u in range(1, 8):
        learner.step(batch)
        assert learner.updates == u
        assert _same(learner.online, learner.target) == (u % 3 == 0), u
    assert not any(p.requires_grad for p in learner.target.parameters())


def test_no_gradient_reaches_the_context():
    learner = Learner(small_config(K), LearnerConfig(), "cpu")
    batch = make_batch(K)
    batch.context.requires_grad_(True)
    batch.next_context.requires_grad_(True)
    learner.step(batch)
    assert batch.context.grad is None and batch.next_context.grad is None
    lstm_grad = learner.online.context.lstm.weight_ih_l0.grad
    assert lstm_grad is not None and lstm_grad.abs().sum() > 0  # the LSTM itself does learn


def test_cql_term_zero_when_off_and_positive_when_on():
    off = Learner(small_config(0), LearnerConfig(cql_alpha=0.0), "cpu")
    on = Learner(small_config(0), LearnerConfig(cql_alpha=1.0), "cpu")
    on.online.load_state_dict(off.online.state_dict())
    on.target.load_state_dict(off.target.state_dict())
    batch = make_batch(0)
    torch.manual_seed(1)
    m_off, _ = off.step(batch)
    torch.manual_seed(1)
    m_on, _ = on.step(batch)
    assert m_off["cql"] == 0.0
    assert m_on["cql"] > 0.0
    assert m_on["loss"] == pytest.approx(m_off["loss"] + m_on["cql"], rel=1e-5)


def naive_munchausen_target(learner: Learner, batch, taus: torch.Tensor, q_policy=None) -> torch.Tensor:
    """Per-sample loop: target net at s' (rows 0..B-1 of taus); the policy at s_t from ``q_policy`` (B, A)
    or, when None, from the target net at s_t (rows B..2B-1 of taus)."""
    c, net = learner.config, learner.target
    k = net.config.context_len
    out = []
    with torch.no_grad():
        for b in range(B):

            def state(prefix, b=b):
                f = getattr(batch, prefix + "frames")[b : b + 1]
                if k == 0:
                    return f, None, None
                return (
                    f,
                    getattr(batch, prefix + "context")[b : b + 1],
                    getattr(batch, prefix + "mask")[b : b + 1],
                )

            z_next, _ = net(*state("next_"), taus=taus[b : b + 1])
            z_next = z_next[0].double()  # (N', A)
            if q_policy is None:
                z_cur, _ = net(*state(""), taus=taus[B + b : B + b + 1])
                q_cur = z_cur[0].double().mean(0)  # (A,)
            else:
                q_cur = q_policy[b].double()
            q_next = z_next.mean(0)
            # policy at s': pi'(a) = exp(q'(a)/tau) / sum exp(q'/tau); log-policy scaled by tau
            log_pi_next = [
                float(q_next[a] / c.m_tau - torch.logsumexp(q_next / c.m_tau, 0)) for a in range(A)
            ]
            pi_next = [math.exp(x) for x in log_pi_next]
            a_t = int(batch.action[b])
            tau_log_pi = c.m_tau * float(q_cur[a_t] / c.m_tau - torch.logsumexp(q_cur / c.m_tau, 0))
            bonus = c.m_alpha * min(max(tau_log_pi, c.m_l0), 0.0)
            row = []
            for j in range(z_next.shape[0]):
                soft = sum(pi_next[a] * (float(z_next[j, a]) - c.m_tau * log_pi_next[a]) for a in range(A))
                row.append(float(batch.returns[b]) + bonus + float(batch.discount[b]) * soft)
            out.append(row)
    return torch.tensor(out, dtype=torch.float32)


@pytest.mark.parametrize("k,l0", [(0, -1.0), (K, -1.0), (K, -0.04)])
def test_munchausen_target_matches_naive_loop(k, l0):
    # l0=-0.04 sits inside the untrained net's tau*log(pi) ~ 0.03*log(1/4): some bonuses clip, some not
    cfg = LearnerConfig(n_tau_target=6, m_l0=l0, munchausen_policy="target")
    learner = Learner(small_config(k), cfg, "cpu")
    batch = make_batch(k)
    taus = torch.rand(2 * B, 6)
    got = learner.targets(batch, taus=taus)
    assert got.shape == (B, 6) and got.dtype == torch.float32
    torch.testing.assert_close(got, naive_munchausen_target(learner, batch, taus), atol=1e-4, rtol=1e-4)
    # deterministic given noise and taus: the target's spectral norms do not power-iterate
    torch.testing.assert_close(learner.targets(batch, taus=taus), got)
    # a given policy Q replaces the target's own (BTR passes the online forward's)
    q_policy = torch.randn(B, A) * 0.05
    torch.testing.assert_close(
        learner.targets(batch, q_policy, taus[:B]),
        naive_munchausen_target(learner, batch, taus, q_policy),
        atol=1e-4,
        rtol=1e-4,
    )


@pytest.mark.parametrize("policy", ["online", "target"])
def test_step_takes_the_munchausen_policy_from_the_named_network(policy, monkeypatch):
    learner = Learner(
        small_config(K), LearnerConfig(lr=1e-2, target_update=10_000, munchausen_policy=policy), "cpu"
    )
    batch = make_batch(K)
    for _ in range(3):  # online and target now differ
        learner.step(batch)
    seen = {}
    real = update_module.munchausen_iqn_target

    def spy(next_quantiles, q_current, *args, **kwargs):
        seen["q"] = q_current
        return real(next_quantiles, q_current, *args, **kwargs)

    monkeypatch.setattr(update_module, "munchausen_iqn_target", spy)
    heads = []
    hook = learner.online.head.register_forward_hook(lambda m, i, out: heads.append(out.detach()))
    learner.step(batch)
    hook.remove()
    online_q = heads[0].view(B, learner.config.n_tau, A).mean(dim=1)  # the gradient pass's quantiles
    if policy == "online":
        assert len(heads) == 1  # no second online pass: BTR reuses the online forward
        torch.testing.assert_close(seen["q"], online_q)
    else:
        assert not torch.allclose(seen["q"], online_q, atol=1e-3)


def test_plain_iqn_target_matches_naive_loop():
    learner = Learner(small_config(K), LearnerConfig(munchausen=False), "cpu")
    batch = make_batch(K)
    taus = torch.rand(B, 8)
    got = learner.targets(batch, taus=taus)
    with torch.no_grad():
        for b in range(B):
            z, _ = learner.target(
                batch.next_frames[b : b + 1],
                batch.next_context[b : b + 1],
                batch.next_mask[b : b + 1],
                taus=taus[b : b + 1],
            )
            a_star = int(z[0].mean(0).argmax())
            expect = batch.returns[b] + batch.discount[b] * z[0, :, a_star]
            torch.testing.assert_close(got[b], expect, atol=1e-4, rtol=1e-4)


def test_state_dict_round_trip_resumes_identically(tmp_path):
    cfg = LearnerConfig(lr=1e-3, target_update=2)
    first = Learner(small_config(K), cfg, "cpu")
    batch = make_batch(K)
    for _ in range(3):
        first.step(batch)
    save_checkpoint(tmp_path / "ck.pt", {"learner": first.state_dict(), "rng": capture_rng()})
    expect, expect_prio = first.step(batch)

    second = Learner(small_config(K), cfg, "cpu")
    ck = load_checkpoint(tmp_path / "ck.pt", "cpu")
    second.load_state_dict(ck["learner"])
    restore_rng(ck["rng"])
    assert second.updates == 3
    got, got_prio = second.step(batch)
    assert got == expect
    np.testing.assert_array_equal(got_prio, expect_prio)
    assert _same(first.online, second.online) and _same(first.target, second.target)


def test_adam_epsilon_per_stream():
    cfg = NetworkConfig(
        n_actions=3, context_len=4, embed_dim=8, lstm_hidden=8, impala_channels=(4, 8, 8), hidden=16
    )
    learner = Learner(cfg, LearnerConfig(), "cpu")
    btr, ctx = learner.optimizer.param_groups
    assert btr["eps"] == 0.005 / 256 and ctx["eps"] == 1e-8  # BTR: 0.005 / batch size
    names = {id(p): n for n, p in learner.online.named_parameters()}
    assert all(names[id(p)].startswith(("context.", "combine_proj.")) for p in ctx["params"])
    assert len(btr["params"]) + len(ctx["params"]) == len(list(learner.online.parameters()))
    plain = Learner(
        NetworkConfig(n_actions=3, context_len=0, impala_channels=(4, 8, 8), hidden=16),
        LearnerConfig(),
        "cpu",
    )
    assert len(plain.optimizer.param_groups) == 1  # K=0 is plain BTR: one group, BTR's epsilon


@pytest.mark.parametrize("k", [0, pytest.param(K, marks=NEEDS_BF16_LSTM)])
def test_bf16_autocast_loss_agrees_with_fp32(k):
    """Same weights, batch, noise and taus: bf16 autocast must really run in bf16 (activations bf16,
    results not bit-identical) yet agree with fp32 -- loss within 0.2 % (measured <= 0.05 % on 2-core CPU),
    priorities within 2 % of their mean, gradient direction cosine >= 0.99 -- and keep float32 weights.
    A no-op "bf16", a model cast to bf16, or a loss reduced in bf16 (0.4 % steps) fails one of these."""
    fp32 = Learner(small_config(k), LearnerConfig(precision="fp32"), "cpu")
    bf16 = Learner(small_config(k), LearnerConfig(precision="bf16"), "cpu")
    bf16.online.load_state_dict(fp32.online.state_dict())
    bf16.target.load_state_dict(fp32.target.state_dict())
    batch = make_batch(k, b=64, seed=3)
    results = {}
    for name, learner in (("fp32", fp32), ("bf16", bf16)):
        dtypes = []
        hook = learner.online.head.register_forward_hook(lambda m, i, out, d=dtypes: d.append(out.dtype))
        torch.manual_seed(100)  # the same noise and taus for both
        metrics, prio = learner.step(batch)
        hook.remove()
        grad = torch.cat([p.grad.flatten() for p in learner.online.parameters() if p.grad is not None])
        results[name] = (metrics, prio, grad, dtypes)
        assert all(p.dtype == torch.float32 for p in learner.online.parameters())
    (m32, p32, g32, d32), (m16, p16, g16, d16) = results["fp32"], results["bf16"]
    assert d32 == [torch.float32] and d16 == [torch.bfloat16]
    assert m16["loss"] != m32["loss"]
    assert m16["loss"] == pytest.approx(m32["loss"], rel=2e-3)
    assert np.abs(p16 - p32).max() <= 0.02 * np.abs(p32).mean()
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) >= 0.99


def test_precision_and_policy_are_checked():
    with pytest.raises(ValueError, match="precision"):
        LearnerConfig(precision="fp16")
    with pytest.raises(ValueError, match="munchausen_policy"):
        LearnerConfig(munchausen_policy="behaviour")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning")
@pytest.mark.filterwarnings(
    "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"
)  # dynamo's own
def test_compiled_update_follows_the_eager_one():
    """compile=True (loss, backward, clipping and Adam through torch.compile) wraps the same update: the same
    init, seed and batches give the eager losses, metrics and priorities step by step, and the same weights
    after 3 steps, to float tolerance (inductor fuses and reorders sums; measured <= 1e-6 relative)."""
    torch.set_num_threads(1)
    eager, compiled = _steps(LearnerConfig(), "cpu", 3), _steps(LearnerConfig(compile=True), "cpu", 3)
    for (m0, p0), (m1, p1) in zip(eager[0], compiled[0], strict=True):
        for key in METRICS:
            assert m1[key] == pytest.approx(m0[key], rel=1e-4, abs=1e-6), key
        np.testing.assert_allclose(p1, p0, rtol=1e-4, atol=1e-5)
    for a, b in zip(eager[1], compiled[1], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_gate_and_lstm_metrics_equal_a_naive_recount():
    """gate_mean / gate_saturation / lstm_mean / lstm_std are of the step's own forward: the context
    stream and gate depend on neither noise nor spectral norm, so a separate pass before the step gives
    the same values; saturation counted element by element."""
    learner = Learner(small_config(K), LearnerConfig(), "cpu")
    batch = make_batch(K)
    with torch.no_grad():
        h = learner.online.context(batch.context, batch.mask)
        gate = torch.sigmoid(learner.online.combine_proj(h))
    flat = gate.flatten().tolist()
    saturated = sum(1 for v in flat if v < 0.05 or v > 0.95) / len(flat)
    metrics, _ = learner.step(batch)
    assert metrics["gate_mean"] == pytest.approx(sum(flat) / len(flat), rel=1e-5)
    assert metrics["gate_saturation"] == pytest.approx(saturated, abs=1e-7)
    vals = h.flatten().double()
    assert metrics["lstm_mean"] == pytest.approx(float(vals.mean()), rel=1e-4, abs=1e-6)
    assert metrics["lstm_std"] == pytest.approx(float(vals.std()), rel=1e-4)
    plain, _ = Learner(small_config(0), LearnerConfig(), "cpu").step(make_batch(0))
    assert math.isnan(plain["lstm_mean"]) and math.isnan(plain["lstm_std"])


def test_channels_last_step_equals_the_default_layout():
    """LearnerConfig.channels_last (NHWC, the CPU default) computes the same step as NCHW on CPU: same loss,
    metrics, priorities and updated weights, up to float rounding of the convolution order."""
    batch = make_batch(K)
    out = []
    for cl in (False, True):
        torch.manual_seed(0)
        learner = Learner(small_config(K), LearnerConfig(channels_last=cl), "cpu")
        w = learner.online.cnn.blocks[0].conv.weight
        assert w.is_contiguous(memory_format=torch.channels_last) == cl
        torch.manual_seed(1)
        metrics, prio = learner.step(batch)
        out.append((metrics, prio, [p.detach().clone() for p in learner.online.parameters()]))
    (m0, p0, w0), (m1, p1, w1) = out
    for k in ("loss", "td", "q_mean", "grad_norm", "gate_mean", "lstm_mean", "lstm_std"):
        assert m1[k] == pytest.approx(m0[k], rel=1e-4, abs=1e-6), k
    np.testing.assert_allclose(p1, p0, rtol=1e-4, atol=1e-5)
    for a, b in zip(w0, w1, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_cnn_layout_default_is_nhwc_on_cpu_and_the_actor_copy_follows_the_learner():
    from rise_agent.acting.thread import actor_copy

    for setting, want in ((None, True), (False, False), (True, True)):
        learner = Learner(small_config(K), LearnerConfig(channels_last=setting), "cpu")
        assert learner.online.channels_last is want and learner.target.channels_last is want
        assert actor_copy(learner.online).channels_last is want


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_speed_settings_step_close_to_plain():
    """cudnn.benchmark + TF32 + channels_last on CUDA: the step stays close to the plain fp32 one."""
    batch = make_batch(K)
    batch = SimpleNamespace(
        **{k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in vars(batch).items()}
    )
    res = []
    for fast in (False, True):
        torch.manual_seed(0)
        cfg = LearnerConfig(cudnn_benchmark=fast, tf32=fast, channels_last=fast)
        learner = Learner(small_config(K), cfg, "cuda")
        torch.manual_seed(1)
        res.append(learner.step(batch)[0])
    assert res[1]["loss"] == pytest.approx(res[0]["loss"], rel=2e-2)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


def test_lstm_chunks_and_one_cast_equal_the_plain_lstm():
    """The context LSTM over batch chunks, and through the cast-once path (fp32 here; fp16 on CUDA), gives
    the plain module's h_{K-1}; the Learner's step with chunks equals the plain step to float rounding."""
    net = Learner(small_config(K), LearnerConfig(), "cpu").online
    ctx, mask = torch.randn(B, K, net.config.embed_dim), torch.rand(B, K) > 0.3
    mask[:, -1] = True
    stream = net.context
    want = stream(ctx, mask)
    stream.set_layout(3, None)
    torch.testing.assert_close(stream(ctx, mask), want, rtol=1e-5, atol=1e-6)
    stream.set_layout(0, torch.float32)
    torch.testing.assert_close(stream(ctx, mask), want, rtol=1e-5, atol=1e-6)
    stream.set_layout(0, None)
    batch, out = make_batch(K), []
    for chunk in (0, 3):
        torch.manual_seed(0)
        learner = Learner(small_config(K), LearnerConfig(lstm_chunk=chunk), "cpu")
        torch.manual_seed(1)
        out.append(learner.step(batch))
    assert out[1][0]["loss"] == pytest.approx(out[0][0]["loss"], rel=1e-5)
    np.testing.assert_allclose(out[1][1], out[0][1], rtol=1e-4, atol=1e-6)


def test_target_stream_flag_is_the_eager_step_on_cpu():
    """target_stream changes nothing without CUDA (no second stream): the step is bit for bit the plain one."""
    batch, out = make_batch(K), []
    for flag in (False, True):
        torch.manual_seed(0)
        learner = Learner(small_config(K), LearnerConfig(target_stream=flag), "cpu")
        torch.manual_seed(1)
        out.append(learner.step(batch))
    assert out[0][0] == out[1][0] and np.array_equal(out[0][1], out[1][1])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_target_stream_and_lstm_half_match_the_eager_step():
    """On CUDA: the target forward on a second stream gives the eager step exactly; the fp16 LSTM in
    chunks of 128 stays close to fp32."""
    batch = make_batch(K)
    batch = SimpleNamespace(
        **{k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in vars(batch).items()}
    )
    res = {}
    for name, cfg in {
        "plain": LearnerConfig(),
        "stream": LearnerConfig(target_stream=True),
        "half": LearnerConfig(lstm_chunk=128, lstm_half=True),
    }.items():
        torch.manual_seed(0)
        learner = Learner(small_config(K), cfg, "cuda")
        torch.manual_seed(1)
        res[name] = learner.step(batch)
    assert res["stream"][0]["loss"] == res["plain"][0]["loss"]
    np.testing.assert_array_equal(res["stream"][1], res["plain"][1])
    assert res["half"][0]["loss"] == pytest.approx(res["plain"][0]["loss"], rel=2e-2)


def _steps(cfg: LearnerConfig, device: str, n: int = 5):
    torch.manual_seed(0)
    learner = Learner(small_config(K), cfg, device)
    torch.manual_seed(1)
    out = []
    for i in range(n):
        batch = make_batch(K, seed=i)
        if device != "cpu":
            batch = SimpleNamespace(
                **{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(batch).items()}
            )
        out.append(learner.step(batch))
    return out, [p.detach().cpu().clone() for p in learner.online.parameters()]


def test_cuda_graph_path_is_the_eager_step_on_cpu():
    """cuda_graph's static batch buffers and its update function (no capture without CUDA) give the eager
    steps bit for bit, through the warm-up and after it; batches of another shape are refused."""
    (eager, w0), (graph, w1) = _steps(LearnerConfig(), "cpu"), _steps(LearnerConfig(cuda_graph=True), "cpu")
    for (m0, p0), (m1, p1) in zip(eager, graph, strict=True):
        assert m0 == m1 and np.array_equal(p0, p1)
    assert all(torch.equal(a, b) for a, b in zip(w0, w1, strict=True))
    learner = Learner(small_config(K), LearnerConfig(cuda_graph=True), "cpu")
    learner.step(make_batch(K))
    with pytest.raises(ValueError, match="one shape"):
        learner.step(make_batch(K, b=B + 1))
    with pytest.raises(ValueError, match="drop compile"):
        Learner(small_config(K), LearnerConfig(cuda_graph=True, compile=True), "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_update_follows_the_eager_one():
    """The captured update (after GRAPH_WARMUP eager steps) tracks the eager steps: same losses to float
    tolerance over steps before and after the capture (capturable Adam; the RNG advances per replay)."""
    (eager, w0), (graph, w1) = (
        _steps(LearnerConfig(), "cuda", 6),
        _steps(LearnerConfig(cuda_graph=True), "cuda", 6),
    )
    for (m0, _), (m1, _) in zip(eager[:3], graph[:3], strict=True):
        assert m1["loss"] == pytest.approx(m0["loss"], rel=1e-4)
    assert all(np.isfinite(m["loss"]) for m, _ in graph)
    assert all(torch.allclose(a, b, rtol=1e-2, atol=1e-4) for a, b in zip(w0, w1, strict=True))
