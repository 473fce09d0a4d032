"""The BTR/RISE learner: online and target networks, Adam, and one gradient step per batch.

The step is :func:`rise_agent.update.loss` (noise, taus, both forwards, the Munchausen-IQN (+CQL) loss),
then backward, the gradient norm clipped to 10 and an Adam step; the target is a hard copy every
``target_update`` gradient steps. Speed paths wrap that same step and are tested equal to it: a CUDA
graph of the whole step, a second CUDA stream for the target forward, ``torch.compile``. docs/deviations.md
lists every place this differs from BTR's published code.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rise_agent.learner_config import LearnerConfig, MunchausenPolicy, Precision
from rise_agent.network import (
    NetworkConfig,
    RiseNetwork,
    default_channels_last,
    make_network,
    spectral_norm_modules,
)
from rise_agent.replay.config import Batch
from rise_agent.update import Stats, loss, stacks_target_policy, target_quantiles, target_values
from rise_data.errors import UserError

__all__ = ["METRICS", "Learner", "LearnerConfig", "MunchausenPolicy", "Precision"]

# The step's metrics: :class:`rise_agent.update.Stats` and grad_norm (before clipping), all in the step's
# one device->host copy.
METRICS = (
    "loss", "td", "cql", "q_mean", "grad_norm", "gate_mean", "gate_saturation", "lstm_mean", "lstm_std"
)  # fmt: skip


def param_groups(net: nn.Module, config: LearnerConfig) -> list[dict]:
    """BTR's Adam epsilon for BTR's parameters; ``context_adam_eps`` for the context stream and its gate."""
    context: list[nn.Parameter] = []
    rest: list[nn.Parameter] = []
    for name, p in net.named_parameters():
        (context if name.startswith(("context.", "combine_proj.")) else rest).append(p)
    groups = [{"params": rest, "eps": config.adam_eps}]
    if context:
        groups.append({"params": context, "eps": config.context_adam_eps})
    return groups


def _speed_settings(config: LearnerConfig, device: torch.device, nets) -> None:
    """cudnn.benchmark and TF32 (process-wide, CUDA only) and the networks' speed layouts; a compiled
    update runs the context LSTM as a loop dynamo traces (it breaks the graph at ``nn.LSTM``)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32
    cast = torch.float16 if (config.lstm_half and device.type == "cuda") else None
    nhwc = default_channels_last(device) if config.channels_last is None else config.channels_last
    for net in nets:
        net.set_layout(nhwc, config.lstm_chunk, cast, lstm_traceable=config.compile)


GRAPH_WARMUP = 3  # eager steps on a side stream before the capture (PyTorch's recipe for whole-step graphs)
_BATCH_FIELDS: tuple[str, ...] = ("frames", "context", "mask", "action", "returns", "discount", "weights")
_BATCH_FIELDS += tuple(f"next_{k}" for k in ("frames", "context", "mask"))


def _adam(net: nn.Module, config: LearnerConfig, device: torch.device) -> torch.optim.Adam:
    """Adam over :func:`param_groups`: one fused kernel per group on the CPU (a per-parameter loop of
    ~6 ops each otherwise); capturable for a CUDA graph."""
    if config.cuda_graph and device.type == "cuda":
        return torch.optim.Adam(param_groups(net, config), lr=config.lr, capturable=True)
    return torch.optim.Adam(param_groups(net, config), lr=config.lr, fused=device.type == "cpu" or None)


def train_step(
    online: RiseNetwork,
    target: RiseNetwork,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    config: LearnerConfig,
) -> tuple[Tensor, Tensor]:
    """loss(), backward, the gradient norm clipped, an optimiser step: (metrics (len(METRICS),), priorities
    (B,)) on the device, no host sync. The gradients must be cleared before."""
    total, priority, stats = loss(online, target, batch, config)
    total.backward()
    grad_norm = nn.utils.clip_grad_norm_(online.parameters(), config.grad_clip, foreach=True)
    optimizer.step()
    return metric_vector(stats, grad_norm), priority


def metric_vector(stats: Stats, grad_norm: Tensor) -> Tensor:
    """The METRICS in order, float32 (len(METRICS),), on the device."""
    values = stats._asdict() | {"grad_norm": grad_norm.detach()}
    return torch.stack([values[k].float() for k in METRICS])


def _static_batch(batch: Batch, device: torch.device) -> Batch:
    """Device copies of the batch's tensors, in the dtypes the update reads: a graph's fixed inputs."""
    kinds = {
        "action": torch.long,
        "returns": torch.float32,
        "discount": torch.float32,
        "weights": torch.float32,
    }
    out: dict[str, Any] = {}
    for k in _BATCH_FIELDS:
        v = getattr(batch, k)
        out[k] = None if v is None else v.to(device, kinds.get(k, v.dtype), copy=True)
    return Batch(**out, index=batch.index)


def _copy_batch(static: Batch, batch: Batch) -> None:
    for k in _BATCH_FIELDS:
        dst, src = getattr(static, k), getattr(batch, k)
        if (dst is None) != (src is None) or (dst is not None and dst.shape != src.shape):
            raise UserError(
                f"cuda_graph needs batches of one shape: batch.{k} changed; keep the batch size fixed"
            )
        if dst is not None:
            dst.copy_(src, non_blocking=True)


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
        self._graphed = config.cuda_graph  # CUDA: captured; CPU: the same static-buffer path, eager
        self._static: Batch | None = None  # the graph's fixed input buffers
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_out: tuple[Tensor, Tensor] | None = None  # the captured step's output buffers
        self._warm = 0
        self.optimizer = _adam(self.online, config, self.device)
        self.updates = 0
        _speed_settings(config, self.device, (self.online, self.target))
        self._train_step = train_step
        if config.compile:
            import torch._inductor.config as inductor

            inductor.fallback_random = True  # compiled random draws equal eager ones: same loss either way
            # the LSTM runs as lstm_loop (_speed_settings); allow_rnn only lets dynamo walk the module tree
            # past the nn.LSTM holding its weights (else every .modules()/.parameters() breaks the graph)
            compiled = torch.compile(train_step, dynamic=False)
            self._train_step = torch._dynamo.config.patch(allow_rnn=True)(compiled)

    def _copy_target(self) -> None:
        self.target.load_state_dict(self.online.state_dict())
        self.target.train()
        for m in spectral_norm_modules(self.target):
            m.eval()

    @torch.no_grad()
    def targets(self, batch: Batch, q_policy: Tensor | None = None, taus: Tensor | None = None) -> Tensor:
        """Target quantiles (B, n_tau_target), float32, with the networks' current noise.

        ``q_policy`` (B, A): the Q(s_t, .) whose softmax is the Munchausen policy; the step passes the
        online forward's. When None it is computed here by the network ``munchausen_policy`` names:
        "online" in a separate no-grad pass, "target" stacked with s' in one pass. ``taus``: (B, N')
        for s', or (2B, N') for the stacked [s'; s_t] (row B+b: s_t of sample b); sampled when None.
        """
        stack = stacks_target_policy(self.config) and q_policy is None
        quantiles = target_quantiles(self.target, batch, self.config, stack, taus)
        return target_values(batch, quantiles, self.config, q_policy, self.online)

    # -- update ------------------------------------------------------------------------------------

    def step(self, batch: Batch) -> tuple[dict[str, float], np.ndarray]:
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

    def _update(self, batch: Batch, zero_grad: bool) -> tuple[Tensor, Tensor]:
        """:func:`train_step` (compiled when ``config.compile``), the gradients cleared before it unless a
        CUDA graph's capture keeps them allocated."""
        if zero_grad:
            self.optimizer.zero_grad(set_to_none=True)
        return self._train_step(self.online, self.target, self.optimizer, batch, self.config)

    def _graph_step(self, batch: Batch) -> tuple[Tensor, Tensor]:
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
        if self._graph is None or self._graph_out is None:
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
