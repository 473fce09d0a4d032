"""The BTR/RISE learner: one Munchausen-IQN gradient step on a replay batch (plus optional CQL).

Per step (BTR's ``learn_call``, arXiv 2411.03820 App. E.2, with RISE's context inputs):

1. Fresh parameter noise on the online and the target network.
2. Online: encode s_t once; its N quantiles give the quantile Huber loss of a_t, the mean-over-tau
   Q(s_t, .) for the CQL(H) term and, detached, the Munchausen policy pi(.|s_t) -- as BTR's code does
   (VIPTankz/Wii-RL BTR.py:1019-1049 reuses the online forward; the ICLR code, Agent.py:567, makes a
   second online pass). ``munchausen_policy="target"`` is standard M-IQN (Vieillard et al. 2020).
3. Target (no grad): the target network encodes s'; ``munchausen_iqn_target`` builds the N' target
   quantiles from Z_target(s') and the bonus ``alpha * clip(tau log pi(a_t|s_t), l0, 0)``.
   ``loss = mean(w * huber) + cql_alpha * mean(cql)``.
4. Adam step with the gradient norm clipped to 10; the target is a hard copy every ``target_update``
   gradient steps.

``precision="bf16"`` runs both forward passes under bf16 autocast (on CUDA or CPU); the losses, the
backward's loss scalar, the optimiser and the weights stay float32. Priorities for PER are BTR's
``sum_i mean_j |target_j - pred_i|`` (the replay adds eps and ^alpha). docs/deviations.md lists every
place this differs from BTR's published code.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from rise_agent.losses import (
    cql_regulariser,
    iqn_target,
    munchausen_iqn_target,
    quantile_huber_loss,
    quantile_td_priority,
)
from rise_agent.network import NetworkConfig, RiseNetwork, make_network
from rise_data.options import param

__all__ = ["METRICS", "Learner", "LearnerConfig", "MunchausenPolicy", "Precision"]

Precision = Literal["fp32", "bf16"]
MunchausenPolicy = Literal["online", "target"]

# loss: total loss; td: mean PER priority signal (sum_i mean_j |TD|); cql: the weighted CQL term in the
# loss (0 when off); q_mean: mean online Q(s_t, .); grad_norm: before clipping; gate_mean /
# gate_saturation: mean of the RISE gate sigmoid(Omega(h)) and the share of its values < 0.05 or > 0.95
# (a saturated gate is the failure signature to watch for), NaN without a multiplicative gate;
# lstm_mean / lstm_std: of the context LSTM's output h_{K-1} over the batch (a collapsed context stream
# shows as a std near 0), NaN when K = 0. All come back in the step's one device->host copy.
METRICS = (
    "loss", "td", "cql", "q_mean", "grad_norm", "gate_mean", "gate_saturation", "lstm_mean", "lstm_std"
)  # fmt: skip
GATE_LOW, GATE_HIGH = 0.05, 0.95  # a gate value outside [0.05, 0.95] counts as saturated


@dataclass(frozen=True)
class LearnerConfig:
    """Optimiser and loss settings; defaults are BTR's published code (docs/deviations.md cites each)."""

    lr: float = param(1e-4, "Adam learning rate")
    adam_eps: float = param(0.005 / 256, "Adam epsilon of BTR's parameters (BTR: 0.005 / batch size)")
    # Adam epsilon of the RISE context stream (LSTM + gate). Measured in the memory probe (delay 10, K=16,
    # n=1; docs/results.md): the cue was learned by 200 updates with 1e-8 and by 400 with BTR's 1.95e-5,
    # on each of 3 seeds. A speed-up, not a requirement.
    context_adam_eps: float = param(1e-8, "Adam epsilon of the RISE context stream and its gate")
    grad_clip: float = param(10.0, "max global gradient norm")
    n_tau: int = param(8, "online quantile samples")
    n_tau_target: int = param(8, "target quantile samples")
    kappa: float = param(1.0, "Huber threshold")
    munchausen: bool = param(True, "Munchausen-IQN target (off: plain IQN)")
    m_tau: float = param(0.03, "entropy temperature")
    m_alpha: float = param(0.9, "Munchausen scaling")
    m_l0: float = param(-1.0, "lower clip of the log-policy bonus")
    munchausen_policy: MunchausenPolicy = param("online", "network whose Q(s_t) gives the bonus's policy")
    target_update: int = param(500, "gradient steps between hard target copies")
    cql_alpha: float = param(0.0, "conservative regulariser weight (the trainer turns it on offline)")
    precision: Precision = param("fp32", "learner forward passes: bf16 autocast or fp32 (BTR's)")
    # GPU speed paths (issue 16); each off falls back to the plain eager path, same math on CPU
    cudnn_benchmark: bool = param(True, "CUDA: let cuDNN time its algorithms for the fixed batch shapes")
    tf32: bool = param(False, "CUDA: TF32 matmuls and convolutions (10-bit mantissa products; BTR: fp32)")
    channels_last: bool = param(False, "NHWC weights and frames for the Impala CNN (tensor-core friendly)")
    lstm_chunk: int = param(0, ">0: the context LSTM over batch chunks of at most this many sequences")
    lstm_half: bool = param(
        False, "CUDA: the context LSTM in fp16, weights cast once per forward (not per call)"
    )
    target_stream: bool = param(False, "CUDA: the target forward on a second stream, beside the online one")
    # (noise, forwards, backward, capturable Adam) replayed on static batch buffers; the target copy and
    # the metrics' host copy stay outside
    cuda_graph: bool = param(False, "CUDA: capture the whole update once as a CUDA graph and replay it")
    compile: bool = param(
        False, "torch.compile the online and target forward passes (same math; first steps compile)"
    )

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.adam_eps <= 0 or self.grad_clip <= 0 or self.kappa <= 0:
            raise ValueError("lr, adam_eps, grad_clip and kappa must be > 0")
        if self.n_tau < 1 or self.n_tau_target < 1 or self.target_update < 1:
            raise ValueError("n_tau, n_tau_target and target_update must be >= 1")
        if self.m_tau <= 0 or self.m_l0 > 0 or self.cql_alpha < 0:
            raise ValueError("m_tau must be > 0, m_l0 <= 0 and cql_alpha >= 0")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.munchausen_policy not in ("online", "target"):
            raise ValueError(f"munchausen_policy must be online or target, got {self.munchausen_policy!r}")


def param_groups(net: nn.Module, config: LearnerConfig) -> list[dict]:
    """BTR's Adam epsilon for BTR's parameters; ``context_adam_eps`` for the context stream and its gate."""
    context, rest = [], []
    for name, p in net.named_parameters():
        (context if name.startswith(("context.", "combine_proj.")) else rest).append(p)
    groups = [{"params": rest, "eps": config.adam_eps}]
    if context:
        groups.append({"params": context, "eps": config.context_adam_eps})
    return groups


def _speed_settings(config: LearnerConfig, device: torch.device, nets) -> None:
    """cudnn.benchmark and TF32 (process-wide, CUDA only) and the channels_last layout of ``nets``."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32
    if config.channels_last:
        for net in nets:
            net.cnn.to(memory_format=torch.channels_last)
    for net in nets:
        if net.context is not None:
            net.context.chunk = config.lstm_chunk
            net.context.cast = torch.float16 if (config.lstm_half and device.type == "cuda") else None


GRAPH_WARMUP = 3  # eager steps on a side stream before the capture (PyTorch's recipe for whole-step graphs)
_BATCH_FIELDS = ("frames", "context", "mask", "action", "returns", "discount", "weights")
_BATCH_FIELDS += tuple(f"next_{k}" for k in ("frames", "context", "mask"))


def _static_batch(batch, device: torch.device) -> SimpleNamespace:
    """Device copies of the batch's tensors, in the dtypes the update reads: a graph's fixed inputs."""
    kinds = {
        "action": torch.long,
        "returns": torch.float32,
        "discount": torch.float32,
        "weights": torch.float32,
    }
    out = {}
    for k in _BATCH_FIELDS:
        v = getattr(batch, k)
        out[k] = None if v is None else v.to(device, kinds.get(k, v.dtype), copy=True)
    return SimpleNamespace(**out)


def _copy_batch(static: SimpleNamespace, batch) -> None:
    for k in _BATCH_FIELDS:
        dst, src = getattr(static, k), getattr(batch, k)
        if (dst is None) != (src is None) or (dst is not None and dst.shape != src.shape):
            raise ValueError(
                f"cuda_graph needs batches of one shape: batch.{k} changed; keep the batch size fixed"
            )
        if dst is not None:
            dst.copy_(src, non_blocking=True)


def _spectral_norm_modules(net: nn.Module) -> list[nn.Module]:
    """The spectral-norm parametrisations inside ``net`` (they power-iterate in training mode)."""
    return [m for m in net.modules() if type(m).__name__ == "_SpectralNorm"]


class Learner:
    """Online and target :class:`RiseNetwork`, Adam, and the M-IQN (+CQL) update.

    ``online`` stays in training mode (noise on, spectral norm power-iterating once per forward, as
    in BTR). ``target`` never gets gradients; it is in training mode too so its noisy layers sample
    noise like BTR's target net, but its spectral-norm parametrisations are held in eval mode: the
    target is a frozen snapshot of the online network, so it uses the snapshot's u/v vectors instead
    of iterating them further between copies (which also makes target values deterministic given
    the noise and taus).
    """

    def __init__(self, net_config: NetworkConfig, config: LearnerConfig, device: torch.device | str) -> None:
        self.net_config = net_config
        self.config = config
        self.device = torch.device(device)
        self.online: RiseNetwork = make_network(net_config).to(self.device).train()
        self.target: RiseNetwork = make_network(net_config).to(self.device)
        self.target.requires_grad_(False)
        self._copy_target()
        if config.cuda_graph and config.compile:
            raise ValueError("cuda_graph captures the eager update: drop compile")
        cuda = self.device.type == "cuda"
        self._graphed = config.cuda_graph  # CUDA: captured; CPU: the same static-buffer path, eager
        self._static, self._graph, self._graph_out, self._warm = None, None, None, 0
        self.optimizer = torch.optim.Adam(
            param_groups(self.online, config), lr=config.lr, capturable=config.cuda_graph and cuda
        )
        self.updates = 0
        self._bf16 = config.precision == "bf16"
        _speed_settings(config, self.device, (self.online, self.target))
        # the forward passes, optionally compiled; taus and noise stay eager-equivalent (fallback_random)
        self._online_fwd, self._target_fwd = self._forward_online, self._forward_target
        if config.compile:
            import torch._inductor.config as inductor

            inductor.fallback_random = True  # compiled random draws equal eager ones: same loss either way
            self._online_fwd = torch.compile(self._forward_online, dynamic=False)
            self._target_fwd = torch.compile(self._forward_target, dynamic=False)
        self._side = (
            torch.cuda.Stream(self.device) if (config.target_stream and self.device.type == "cuda") else None
        )
        self._gate: Tensor | None = None
        self._lstm: Tensor | None = None
        self._capture_gate = False
        if self.online.combine_proj is not None and net_config.combine == "multiply":
            self.online.combine_proj.register_forward_hook(self._gate_hook)
        if self.online.context is not None:
            self.online.context.register_forward_hook(self._lstm_hook)

    # -- helpers -----------------------------------------------------------------------------------

    def _gate_hook(self, module: nn.Module, inputs, output: Tensor) -> None:
        if self._capture_gate:
            self._gate = output.detach()

    def _lstm_hook(self, module: nn.Module, inputs, output: Tensor) -> None:
        if self._capture_gate:
            self._lstm = output.detach()

    def _copy_target(self) -> None:
        self.target.load_state_dict(self.online.state_dict())
        self.target.train()
        for m in _spectral_norm_modules(self.target):
            m.eval()

    def _autocast(self):
        if self._bf16:  # a captured graph cannot use autocast's weight cache
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not self._graphed)
        return contextlib.nullcontext()

    def _inputs(self, batch, prefix: str = "") -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(frames, context, mask) of the batch's s_t (prefix "") or s' (prefix "next_") on the device."""
        frames = getattr(batch, f"{prefix}frames").to(self.device, non_blocking=True)
        context = getattr(batch, f"{prefix}context")
        mask = getattr(batch, f"{prefix}mask")
        if self.net_config.context_len == 0:
            return frames, None, None
        if context is None:
            raise ValueError(f"batch.{prefix}context is required for context_len > 0")
        # stored embeddings are inputs, never trained: cut any graph a caller may have attached
        context = context.detach().to(self.device, non_blocking=True)
        if mask is None:
            mask = torch.ones(context.shape[:2], dtype=torch.bool, device=self.device)
        return frames, context, mask.to(self.device, non_blocking=True)

    def _forward_online(self, frames, context, mask, n_tau: int, taus=None):
        z = self.online.encode(frames, context, mask)
        return self.online.quantiles(z, n_tau, taus)

    def _forward_target(self, frames, context, mask, n_tau: int, taus=None):
        z = self.target.encode(frames, context, mask)
        return self.target.quantiles(z, n_tau, taus)

    # -- target ------------------------------------------------------------------------------------

    @torch.no_grad()
    def targets(self, batch, q_policy: Tensor | None = None, taus: Tensor | None = None) -> Tensor:
        """Target quantiles (B, n_tau_target), float32, with the networks' current noise.

        ``q_policy`` (B, A): the Q(s_t, .) whose softmax is the Munchausen policy; ``step`` passes the
        online forward's. When None it is computed here by the network ``munchausen_policy`` names:
        "online" in a separate no-grad pass, "target" stacked with s' in one pass. ``taus``: (B, N')
        for s', or (2B, N') for the stacked [s'; s_t] (row B+b: s_t of sample b); sampled when None.
        """
        stack = self.config.munchausen and q_policy is None and self.config.munchausen_policy == "target"
        return self._target_values(batch, self._target_quantiles(batch, stack, taus), stack, q_policy)

    def _target_quantiles(self, batch, stack: bool, taus: Tensor | None) -> Tensor:
        """The target network's quantiles of s' (and of s_t below them when ``stack``), float32."""
        c = self.config
        frames, context, mask = self._inputs(batch, "next_")
        if stack:
            f, ctx, m = self._inputs(batch)
            frames = torch.cat([frames, f])
            context = torch.cat([context, ctx]) if context is not None else None
            mask = torch.cat([mask, m]) if mask is not None else None
        with self._autocast():
            quantiles, _ = self._target_fwd(frames, context, mask, c.n_tau_target, taus)
        return quantiles.float()

    def _target_values(self, batch, quantiles: Tensor, stack: bool, q_policy: Tensor | None) -> Tensor:
        c = self.config
        returns = batch.returns.to(self.device, torch.float32)
        discount = batch.discount.to(self.device, torch.float32)
        if not c.munchausen:
            # without Munchausen BTR bootstraps from the target's own greedy action (no double DQN)
            return iqn_target(quantiles, returns, discount)
        if stack:
            b = quantiles.shape[0] // 2
            quantiles, q_policy = quantiles[:b], quantiles[b:].mean(dim=1)
        elif q_policy is None:
            f, ctx, m = self._inputs(batch)
            with self._autocast():
                q_policy = self.online.q_values(f, ctx, m, c.n_tau).float()
        return munchausen_iqn_target(
            quantiles,
            q_policy.float(),
            batch.action.to(self.device),
            returns,
            discount,
            entropy_tau=c.m_tau,
            alpha=c.m_alpha,
            l0=c.m_l0,
        )

    @torch.no_grad()
    def _side_target(self, batch, stack: bool, taus: Tensor) -> Tensor:
        """The target forward enqueued on the side stream (after the inputs' uploads)."""
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            return self._target_quantiles(batch, stack, taus)

    # -- update ------------------------------------------------------------------------------------

    def step(self, batch) -> tuple[dict[str, float], np.ndarray]:
        """One gradient step; returns metrics (see ``METRICS``) and new priorities (B,) float32."""
        c = self.config
        stats, priority = self._graph_step(batch) if self._graphed else self._update(batch, zero_grad=True)
        self.updates += 1
        if self.updates % c.target_update == 0:
            self._copy_target()  # in place (load_state_dict copies), so a captured graph stays valid
        # one device->host copy for metrics and priorities together (a single sync per step)
        host = torch.cat([stats, priority.float()]).cpu().numpy()
        metrics = {k: float(v) for k, v in zip(METRICS, host[: len(METRICS)], strict=True)}
        return metrics, host[len(METRICS) :].copy()

    def _update(self, batch, zero_grad: bool) -> tuple[Tensor, Tensor]:
        """Noise, forwards, loss, backward, clipped Adam step: (stats (len(METRICS),), priorities (B,)) on
        the device, no host sync (what a CUDA graph captures)."""
        c = self.config
        self.online.reset_noise()
        self.target.reset_noise()
        frames, context, mask = self._inputs(batch)
        action = batch.action.to(self.device).long()
        weights = batch.weights.to(self.device, torch.float32)
        online_policy = c.munchausen and c.munchausen_policy == "online"
        stack = c.munchausen and c.munchausen_policy == "target"
        b = frames.shape[0]
        # both tau sets drawn up front, online first (the order the forwards drew them in), so the
        # target forward may run before or beside the online one with the same numbers
        taus = self.online.sample_taus(b, c.n_tau, self.device)
        target_taus = self.target.sample_taus(2 * b if stack else b, c.n_tau_target, self.device)
        target_q = self._side_target(batch, stack, target_taus) if self._side is not None else None
        self._capture_gate, self._gate, self._lstm = True, None, None
        try:
            with self._autocast():
                quantiles, taus = self._online_fwd(frames, context, mask, c.n_tau, taus)
        finally:
            self._capture_gate = False
        quantiles = quantiles.float()  # (B, N, A)
        q = quantiles.mean(dim=1)  # (B, A)
        if target_q is None:
            with torch.no_grad():
                target_q = self._target_quantiles(batch, stack, target_taus)
        else:
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(self._side)
            target_q.record_stream(main)
        with torch.no_grad():
            target = self._target_values(batch, target_q, stack, q.detach() if online_policy else None)
        idx = action.view(-1, 1, 1).expand(-1, quantiles.shape[1], 1)
        pred = quantiles.gather(2, idx).squeeze(2)  # (B, N)
        td_loss = (weights * quantile_huber_loss(pred, target, taus, c.kappa)).mean()
        if c.cql_alpha > 0:
            cql = c.cql_alpha * cql_regulariser(q, action).mean()
            loss = td_loss + cql
        else:
            cql = torch.zeros((), device=self.device)
            loss = td_loss

        if zero_grad:
            self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.online.parameters(), c.grad_clip)
        self.optimizer.step()

        priority = quantile_td_priority(pred.detach(), target)
        nan = torch.full((), float("nan"), device=self.device)
        gate = self._gate.float().sigmoid() if self._gate is not None else None
        lstm = self._lstm.float() if self._lstm is not None else None
        self._gate = self._lstm = None
        stats = [
            loss.detach(),
            priority.mean(),
            cql.detach(),
            q.detach().mean(),
            grad_norm.detach().float(),
            gate.mean() if gate is not None else nan,
            ((gate < GATE_LOW) | (gate > GATE_HIGH)).float().mean() if gate is not None else nan,
            lstm.mean() if lstm is not None else nan,
            lstm.std() if lstm is not None else nan,
        ]
        return torch.stack(stats).float(), priority

    def _graph_step(self, batch) -> tuple[Tensor, Tensor]:
        """``_update`` on static copies of the batch: GRAPH_WARMUP eager steps on a side stream, then one
        capture of the whole update (capturable Adam) replayed from there on."""
        if self._static is None:
            self._static = _static_batch(batch, self.device)
        else:
            _copy_batch(self._static, batch)
        if self._graph is None and self._warm < GRAPH_WARMUP:
            self._warm += 1
            if self.device.type != "cuda":  # the same static path, eager (what CPU tests check)
                return self._update(self._static, zero_grad=True)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                out = self._update(self._static, zero_grad=True)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return out
        if self.device.type != "cuda":
            return self._update(self._static, zero_grad=True)
        if self._graph is None:
            self.optimizer.zero_grad(set_to_none=True)  # backward allocates the grads inside the graph
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._graph_out = self._update(self._static, zero_grad=False)
        self._graph.replay()
        return self._graph_out

    # -- state -------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Online, target and optimiser state and the update counter (checkpoint-safe types only)."""
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": int(self.updates),
            "config": json.dumps(asdict(self.config)),
        }

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._graph, self._warm = None, 0  # new optimiser state tensors: capture again
        self.updates = int(state["updates"])
