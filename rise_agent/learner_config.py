"""The learner's settings: the loss, the optimiser and the speed paths of the update."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rise_data.errors import UserError
from rise_data.options import param

__all__ = ["LearnerConfig", "MunchausenPolicy", "Precision"]

Precision = Literal["fp32", "bf16"]
MunchausenPolicy = Literal["online", "target"]


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
    # GPU speed paths; each off falls back to the plain eager path, same math on CPU
    cudnn_benchmark: bool = param(True, "CUDA: let cuDNN time its algorithms for the fixed batch shapes")
    tf32: bool = param(False, "CUDA: TF32 matmuls and convolutions (10-bit mantissa products; BTR: fp32)")
    channels_last: bool | None = param(
        None, "NHWC weights and frames for the Impala CNN (unset: on on the CPU, off on CUDA; same math)"
    )
    lstm_chunk: int = param(0, ">0: the context LSTM over batch chunks of at most this many sequences")
    lstm_half: bool = param(
        False, "CUDA: the context LSTM in fp16, weights cast once per forward (not per call)"
    )
    target_stream: bool = param(False, "CUDA: the target forward on a second stream, beside the online one")
    # (noise, forwards, backward, capturable Adam) replayed on static batch buffers; the target copy and
    # the metrics' host copy stay outside
    cuda_graph: bool = param(False, "CUDA: capture the whole update once as a CUDA graph and replay it")
    compile: bool = param(
        False,
        "torch.compile the whole update: loss, backward, clipping and Adam (same math; the first step compiles)",
    )

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.adam_eps <= 0 or self.grad_clip <= 0 or self.kappa <= 0:
            raise UserError("lr, adam_eps, grad_clip and kappa must be > 0")
        if self.n_tau < 1 or self.n_tau_target < 1 or self.target_update < 1:
            raise UserError("n_tau, n_tau_target and target_update must be >= 1")
        if self.m_tau <= 0 or self.m_l0 > 0 or self.cql_alpha < 0:
            raise UserError("m_tau must be > 0, m_l0 <= 0 and cql_alpha >= 0")
        if self.precision not in ("fp32", "bf16"):
            raise UserError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.munchausen_policy not in ("online", "target"):
            raise UserError(f"munchausen_policy must be online or target, got {self.munchausen_policy!r}")
        if self.cuda_graph and self.compile:
            raise UserError("cuda_graph captures the eager update: drop compile")
