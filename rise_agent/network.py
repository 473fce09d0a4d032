"""BTR's IQN network (Impala CNN, noisy dueling head) with RISE's frozen-embedding context stream.

Layout (BTR, arXiv 2411.03820 App. E.1; RISE, arXiv 2512.20513)::

    frames u8 (B,4,84,84) -> /255 -> ImpalaCNN -> AdaptiveMaxPool(6) -> feat (B,2304)
    context (B,K,D) stored embeddings, mask (B,K) -> [Linear proj] -> LSTM -> h_{K-1} -> Linear
    feat, h -> combine (multiply: feat * sigmoid(Linear(h)), the paper's gate) -> z (B,W)
    taus (B,N) -> cos(pi i tau), i=0..63 -> Linear(64->W) -> ReLU -> * z -> (B*N, W)
    -> dueling head: V = NoisyLinear(W->512)->ReLU->NoisyLinear(512->1), A likewise (->A)
    -> Q_tau = V + A - mean(A) -> quantiles (B,N,A)

``context_len == 0`` builds plain BTR: no context stream, no parameters for it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm
from torch.nn.utils.parametrize import ParametrizationList

from rise_data.options import ConfigError, param

Combine = Literal["multiply", "concat", "add"]
ContextMasking = Literal["zero", "pack"]


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of :class:`RiseNetwork`; defaults are BTR's Atari network plus RISE with K=80."""

    n_actions: int = param(help="Number of actions (from the env).")
    frame_stack: int = param(4, "agent observations stacked per state (BTR: 4)")
    frame_hw: tuple[int, int] = param((84, 84), "only needed for the LayerNorm shapes (BTR normalises C,H,W)")
    impala_channels: tuple[int, ...] = param((32, 64, 64), "Impala width scale 2")
    pool_size: int = param(6, "adaptive max-pool -> 6*6*64 = 2304 features")
    spectral_norm: bool = param(True, "on the 12 residual convs only (BTR)")
    n_cos: int = param(64, "cosine embedding size of IQN's tau (BTR: 64)")
    hidden: int = param(512, "size of each dueling stream's hidden layer")
    noisy_sigma0: float = param(0.5, "initial noise scale of the noisy linear layers (BTR: 0.5)")
    layer_norm: bool = param(
        False, "BTR's optional LN: after each block's stem conv and each stream's first linear"
    )
    context_len: int = param(80, "K; 0 = plain BTR")
    embed_dim: int = param(512, "D of the stored frozen embeddings")
    lstm_hidden: int = param(512, "hidden size of the context LSTM")
    context_proj: int = param(0, ">0: Linear(embed_dim -> context_proj) before the LSTM (cheaper LSTM)")
    combine: Combine = param(
        "multiply", "how the context joins the features: RISE's gate (multiply), concat or add"
    )
    concat_dim: int = param(
        256, 'width of the projected LSTM output appended to the features for combine="concat"'
    )
    context_masking: ContextMasking = param("zero", "see ContextStream")
    lstm_init: Literal["chrono", "default"] = param("chrono", "see chrono_init")

    def __post_init__(self) -> None:
        if self.n_actions < 1:
            raise ConfigError(f"n_actions must be >= 1, got {self.n_actions}")
        if self.context_len < 0:
            raise ConfigError(f"context_len must be >= 0, got {self.context_len}")
        if self.combine not in ("multiply", "concat", "add"):
            raise ConfigError(f"combine must be multiply, concat or add, got {self.combine!r}")
        if self.context_masking not in ("zero", "pack"):
            raise ConfigError(f"context_masking must be zero or pack, got {self.context_masking!r}")

    @property
    def conv_features(self) -> int:
        """Width of the pooled CNN output (2304 for the defaults)."""
        return self.impala_channels[-1] * self.pool_size * self.pool_size

    @property
    def feature_dim(self) -> int:
        """Width W of the state feature that enters the IQN product and the dueling head."""
        if self.context_len > 0 and self.combine == "concat":
            return self.conv_features + self.concat_dim
        return self.conv_features


# ---------------------------------------------------------------------------------------------------
# Noisy linear layer


class NoisyLinear(nn.Module):
    """Linear layer with factorised Gaussian noise (Fortunato et al. 2018), as in BTR.

    ``w = mu_w + sigma_w * (f(e_out) f(e_in)^T)``, ``f(x) = sign(x) sqrt(|x|)``; mu ~ U(+-1/sqrt(in)),
    sigma = sigma0/sqrt(in) for weights and biases. Noise is applied only when the module is in
    training mode *and* ``noise_enabled`` is True; :func:`disable_noise` switches it off temporarily.
    The noise sample is a buffer that changes only on :meth:`reset_noise`.
    """

    weight_epsilon: Tensor  # buffers, declared for the type checker (nn.Module types them Tensor | Module)
    bias_epsilon: Tensor

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.sigma0 = sigma0
        self.noise_enabled = True
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("weight_epsilon", torch.zeros(out_features, in_features))
        self.register_buffer("bias_epsilon", torch.zeros(out_features))
        self.reset_parameters()
        self.reset_noise()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        scale = 1.0 / math.sqrt(self.in_features)
        self.weight_mu.uniform_(-scale, scale)
        self.bias_mu.uniform_(-scale, scale)
        self.weight_sigma.fill_(self.sigma0 * scale)
        self.bias_sigma.fill_(self.sigma0 * scale)

    @torch.no_grad()
    def reset_noise(self) -> None:
        """Draw a new factorised noise sample."""
        eps_in = _scaled_noise(self.in_features, self.weight_mu.device)
        eps_out = _scaled_noise(self.out_features, self.weight_mu.device)
        self.weight_epsilon.copy_(torch.outer(eps_out, eps_in))
        self.bias_epsilon.copy_(eps_out)

    @property
    def noise_active(self) -> bool:
        return self.training and self.noise_enabled

    def forward(self, x: Tensor) -> Tensor:
        if self.noise_active:
            weight = self.weight_mu + self.weight_sigma * self.weight_epsilon
            bias = self.bias_mu + self.bias_sigma * self.bias_epsilon
            return F.linear(x, weight, bias)
        return F.linear(x, self.weight_mu, self.bias_mu)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sigma0={self.sigma0}"


def _scaled_noise(size: int, device: torch.device) -> Tensor:
    x = torch.randn(size, device=device)
    return x.sign() * x.abs().sqrt()


def reset_noise(net: nn.Module) -> None:
    """Resample the noise of every :class:`NoisyLinear` in ``net``, all drawn in one ``randn`` call.

    Each layer gets the same factorised sample as :meth:`NoisyLinear.reset_noise` (``f`` of fresh
    standard normals for its inputs and outputs), sliced from one draw in module order, so a step
    launches one random kernel and one ``f`` instead of two of each per layer (BTR draws per layer:
    same distribution, other numbers).
    """
    layers = [m for m in net.modules() if isinstance(m, NoisyLinear)]
    if not layers:
        return
    sizes = [n for m in layers for n in (m.in_features, m.out_features)]
    eps = _scaled_noise(sum(sizes), layers[0].weight_mu.device).split(sizes)
    with torch.no_grad():
        for m, eps_in, eps_out in zip(layers, eps[::2], eps[1::2], strict=True):
            torch.outer(eps_out, eps_in, out=m.weight_epsilon)
            m.bias_epsilon.copy_(eps_out)


@contextlib.contextmanager
def disable_noise(net: nn.Module) -> Iterator[nn.Module]:
    """Context manager: no parameter noise inside (evaluation), previous per-layer flags restored after."""
    layers = [m for m in net.modules() if isinstance(m, NoisyLinear)]
    previous = [m.noise_enabled for m in layers]
    try:
        for m in layers:
            m.noise_enabled = False
        yield net
    finally:
        for m, flag in zip(layers, previous, strict=True):
            m.noise_enabled = flag


class SpectralNorm(Protocol):
    """What this module reads and writes of torch's spectral-norm parametrisation (a private class)."""

    training: bool
    eps: float
    n_power_iterations: int
    _u: Tensor  # (out,) left singular vector estimate, a buffer
    _v: Tensor  # (in*k*k,) right singular vector estimate, a buffer

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


def _weight_parametrization(m: nn.Module) -> ParametrizationList:
    """The parametrisation list of ``m.weight`` (its raw ``original`` and the parametrisations on it)."""
    plist = cast(nn.ModuleDict, m.parametrizations)["weight"]
    return cast(ParametrizationList, plist)


def spectral_norm_modules(net: nn.Module) -> list[SpectralNorm]:
    """The spectral-norm parametrisations inside ``net``: they power-iterate in training mode only.

    Spectral norm is the only parametrisation this network registers, so every parametrisation of a
    ``weight`` is one.
    """
    return [
        cast(SpectralNorm, p)
        for m in net.modules()
        if parametrize.is_parametrized(m, "weight")
        for p in _weight_parametrization(m)
    ]


def spectral_weights(convs: list[nn.Conv2d]) -> list[Tensor]:
    """The spectral-normalised weights of ``convs`` (each parametrised by ``spectral_norm``), in batched ops.

    The same math as torch's spectral-norm parametrisation, one shape group at a time: in training mode one
    power iteration ``u = normalize(W v)``, ``v = normalize(W^T u)`` updates the buffers in place (no grad),
    then ``W / (u^T W v)`` with u and v constants. A dozen small convolutions cost a dozen ops this way
    instead of some 20 each through the parametrisation.
    """
    out: dict[int, Tensor] = {}
    plists = [_weight_parametrization(conv) for conv in convs]
    groups: dict[tuple, list[int]] = {}
    for i, plist in enumerate(plists):
        w = plist.original
        groups.setdefault((w.shape, w.dtype, w.device), []).append(i)
    for idx in groups.values():
        norms = [cast(SpectralNorm, plists[i][0]) for i in idx]
        weight = torch.stack([plists[i].original for i in idx])
        mat = weight.flatten(2)  # (n, out, in*k*k): torch's weight matrix for dim 0
        if norms[0].training:
            _power_iteration(mat.detach(), norms)
        u = torch.stack([m._u for m in norms]).unsqueeze(1)  # (n, 1, out)
        v = torch.stack([m._v for m in norms]).unsqueeze(2)  # (n, in*k*k, 1)
        sigma = torch.bmm(torch.bmm(u, mat), v)  # (n, 1, 1)
        for i, w in zip(idx, (weight / sigma.view(-1, 1, 1, 1, 1)).unbind(0), strict=True):
            out[i] = w
    return [out[i] for i in range(len(convs))]


@torch.no_grad()
def _power_iteration(mat: Tensor, norms: list[SpectralNorm]) -> None:
    us, vs = [m._u for m in norms], [m._v for m in norms]
    eps = norms[0].eps
    v = torch.stack(vs)
    for _ in range(norms[0].n_power_iterations):
        u = F.normalize(torch.bmm(mat, v.unsqueeze(2)).squeeze(2), dim=1, eps=eps)
        v = F.normalize(torch.bmm(mat.transpose(1, 2), u.unsqueeze(2)).squeeze(2), dim=1, eps=eps)
    torch._foreach_copy_(us + vs, list(u.unbind(0)) + list(v.unbind(0)))


# ---------------------------------------------------------------------------------------------------
# Impala CNN


class ImpalaResidual(nn.Module):
    """Pre-activation residual layer ``x + conv(relu(conv(relu(x))))``."""

    def __init__(self, channels: int, use_spectral_norm: bool) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        if use_spectral_norm:  # parametrises the convs in place
            spectral_norm(self.conv0)
            spectral_norm(self.conv1)

    def forward(self, x: Tensor, weights: Iterator[Tensor] | None = None) -> Tensor:
        """``weights``: the convs' spectral-normalised weights in order (see :func:`spectral_weights`)."""
        if weights is None:
            return x + self.conv1(F.relu(self.conv0(F.relu(x))))
        h = F.conv2d(F.relu(x), next(weights), self.conv0.bias, padding=1)
        return x + F.conv2d(F.relu(h), next(weights), self.conv1.bias, padding=1)


class ImpalaBlock(nn.Module):
    """Conv3x3 -> [LayerNorm(C,H,W)] -> MaxPool(3, 2, pad 1) -> 2 residual layers."""

    def __init__(
        self, c_in: int, c_out: int, use_spectral_norm: bool, ln_shape: tuple[int, int, int] | None
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        # BTR's LN normalises the whole (C,H,W) map of the stem conv output, with an elementwise affine.
        self.norm = nn.LayerNorm(list(ln_shape)) if ln_shape is not None else nn.Identity()
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res0 = ImpalaResidual(c_out, use_spectral_norm)
        self.res1 = ImpalaResidual(c_out, use_spectral_norm)

    def forward(self, x: Tensor, weights: Iterator[Tensor] | None = None) -> Tensor:
        return self.res1(self.res0(self.pool(self.norm(self.conv(x))), weights), weights)


class ImpalaCNN(nn.Module):
    """BTR's Impala encoder: 3 blocks, final ReLU, adaptive max-pool, flatten. uint8 in, (B, C*p*p) out."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        h, w = config.frame_hw
        blocks = []
        c_in = config.frame_stack
        for c_out in config.impala_channels:
            ln_shape = (c_out, h, w) if config.layer_norm else None
            blocks.append(ImpalaBlock(c_in, c_out, config.spectral_norm, ln_shape))
            c_in = c_out
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1  # MaxPool2d(3, 2, padding=1)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveMaxPool2d(config.pool_size)
        self.out_features = config.conv_features
        # the residual convs, in forward order, when spectral norm parametrises them
        self.spectral_convs = [
            conv
            for b in blocks
            for r in (b.res0, b.res1)
            for conv in (r.conv0, r.conv1)
            if config.spectral_norm
        ]

    @property
    def stem_weight(self) -> Tensor:
        """The first conv's weight: its dtype and memory layout are the ones the network runs in."""
        block = self.blocks[0]
        assert isinstance(block, ImpalaBlock)
        return block.conv.weight

    @property
    def channels_last(self) -> bool:
        """Whether the weights were put in NHWC (``RiseNetwork.set_layout``); a 1-channel stem is ambiguous: NCHW."""
        w = self.stem_weight
        return w.dim() == 4 and w.shape[1] > 1 and w.is_contiguous(memory_format=torch.channels_last)

    def forward(self, frames: Tensor) -> Tensor:
        x = frames.to(self.stem_weight.dtype) / 255.0
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # the layout the weights were put in
        weights = iter(spectral_weights(self.spectral_convs)) if self.spectral_convs else None
        for block in self.blocks:
            x = block(x, weights)
        return self.pool(F.relu(x)).flatten(1)


# ---------------------------------------------------------------------------------------------------
# RISE context stream


def chrono_init(lstm: nn.LSTM, horizon: int) -> None:
    """Chrono initialisation (Tallec & Ollivier, ICLR 2018) for memories of up to ``horizon`` steps.

    Forget-gate biases ~ log(U[1, horizon - 1]) and input-gate biases their negatives, so the LSTM starts
    out keeping information over the whole window. With PyTorch's default init (biases ~ +-1/sqrt(H))
    the forget gate sits near 0.5 and a cue 30 steps back reaches the output scaled by ~0.5**30: in
    this project's memory probe the context stream then never learned to use the cue (see
    pipelines/memory_probe.py).
    """
    h = lstm.hidden_size
    with torch.no_grad():
        forget = torch.log(torch.empty(h).uniform_(1.0, max(2.0, float(horizon - 1))))
        for layer in range(lstm.num_layers):
            b_ih, b_hh = getattr(lstm, f"bias_ih_l{layer}"), getattr(lstm, f"bias_hh_l{layer}")
            b_ih[: 2 * h].zero_()
            b_hh[:h].copy_(-forget)  # input gate (PyTorch gate order: input, forget, cell, output)
            b_hh[h : 2 * h].copy_(forget)


def lstm_loop(
    x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """One LSTM layer from a zero state, step by step: the final (h, c), each (B, H).

    ``x`` (B, K, I) batch first; the weights and biases are ``nn.LSTM``'s ``*_l0`` (gates stacked
    input, forget, cell, output). PyTorch's equations: ``gates = x_t W_ih^T + b_ih + h W_hh^T + b_hh``,
    ``c = sigmoid(f) c + sigmoid(i) tanh(g)``, ``h = sigmoid(o) tanh(c)``. ``mask`` (B, K) bool: where
    False the step is skipped and the state carried over, so a left-padded row ends where a run over
    its valid steps alone would. Plain tensor ops, so torch.compile traces it (it does not trace
    ``nn.LSTM``) and fuses each step's pointwise gate math.
    """
    b, k, _ = x.shape
    pre = F.linear(x, w_ih, b_ih + b_hh)  # every step's input projection in one matmul: (B, K, 4H)
    h = c = x.new_zeros(b, w_hh.shape[1])
    for t in range(k):
        i, f, g, o = (pre[:, t] + F.linear(h, w_hh)).chunk(4, dim=1)
        c_t = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_t = torch.sigmoid(o) * torch.tanh(c_t)
        if mask is None:
            h, c = h_t, c_t
        else:
            keep = mask[:, t, None]
            h, c = torch.where(keep, h_t, h), torch.where(keep, c_t, c)
    return h, c


class ContextStream(nn.Module):
    """LSTM over the last K stored frozen-encoder embeddings of the episode, current frame last.

    Input ``context`` (B, K, D) of any float dtype (cast to the parameter dtype; it never needs or
    gets a gradient) and ``mask`` (B, K) bool, False on the left-padded slots before the episode
    start. Output: the LSTM hidden state after the last position, h_{K-1} (B, lstm_hidden).

    Padding, ``context_masking``:

    * ``"zero"`` (default): masked slots are replaced by zero vectors (``torch.where``, so even NaN
      garbage there is harmless; after the optional projection too, so the LSTM input is exactly 0)
      and the LSTM runs over the full window from a zero state. The output therefore does not depend
      on what is stored in masked slots, but it does see *how many* zero steps precede the episode
      start -- the same convention as BTR's blanked frame-stack slots. One fused cuDNN call, no
      host sync, compile friendly.
    * ``"pack"``: each row's valid suffix is moved to the front and run as a packed sequence, so
      h_{K-1} equals an LSTM run from a zero state on the valid steps alone (the exact "episode
      starts here" semantics). Needs a left-padded mask (valid slots contiguous, ending at K-1)
      and a host sync for the lengths.

    ``set_layout(..., loop=True)`` runs the same LSTM, same parameters, through :func:`lstm_loop`
    instead of ``nn.LSTM``: what a compiled update traces (``pack`` then skips the masked steps, no
    host sync). Eagerly ``nn.LSTM``'s fused kernel is faster.
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.masking = config.context_masking
        self.proj = nn.Linear(config.embed_dim, config.context_proj) if config.context_proj > 0 else None
        lstm_in = config.context_proj if config.context_proj > 0 else config.embed_dim
        self.lstm = nn.LSTM(lstm_in, config.lstm_hidden, batch_first=True)
        self.embed_dim = config.embed_dim
        if config.lstm_init == "chrono":
            chrono_init(self.lstm, config.context_len)

    def forward(self, context: Tensor, mask: Tensor | None = None) -> Tensor:
        if context.dim() != 3 or context.shape[-1] != self.embed_dim:
            raise ValueError(f"context must be (B, K, {self.embed_dim}), got {tuple(context.shape)}")
        w = self.input_weight
        x = context.to(device=w.device, dtype=w.dtype)
        if mask is not None:
            if mask.shape != context.shape[:2]:
                raise ValueError(f"mask must be {tuple(context.shape[:2])}, got {tuple(mask.shape)}")
            mask = mask.to(device=x.device, dtype=torch.bool)
            x = torch.where(mask.unsqueeze(-1), x, 0.0)
        if self.proj is not None:
            x = self.proj(x)
            if mask is not None:
                x = torch.where(mask.unsqueeze(-1), x, 0.0)
        if self.loop:
            return self._loop(x, mask)
        if mask is None or self.masking == "zero":
            return self._last(x)
        return self._packed(x, mask)

    @property
    def input_weight(self) -> Tensor:
        """The LSTM's first input weight: the device and dtype the stream runs in."""
        return cast(Tensor, self.lstm.weight_ih_l0)

    chunk = 0  # >0: run the LSTM over batch chunks of at most this many sequences
    cast: torch.dtype | None = None  # run the LSTM in this dtype, weights cast once per forward
    loop = False  # run the LSTM as lstm_loop (traceable) instead of nn.LSTM

    def set_layout(self, chunk: int, cast: torch.dtype | None, loop: bool = False) -> None:
        """Run the LSTM over batch chunks of at most ``chunk`` sequences (0: all at once) in ``cast``
        (None: the weights' dtype; fp16 on CUDA casts the weights once per forward, not per call);
        ``loop``: as :func:`lstm_loop` (all rows at once, so ``chunk`` is moot), for torch.compile."""
        self.chunk, self.cast, self.loop = chunk, cast, loop

    def _loop(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """h_{K-1} by :func:`lstm_loop`; ``pack`` skips masked steps but always runs the current frame,
        as ``_packed`` does for a row with no valid slot."""
        keep = None
        if mask is not None and self.masking == "pack":
            keep = mask | (torch.arange(mask.shape[1], device=mask.device) == mask.shape[1] - 1)
        w_ih, w_hh, b_ih, b_hh = self._weights()
        h, _ = lstm_loop(x.to(w_ih.dtype), w_ih, w_hh, b_ih, b_hh, mask=keep)
        return h.to(self.input_weight.dtype)

    def _weights(self) -> list[Tensor]:
        """The LSTM's (w_ih, w_hh, b_ih, b_hh), in ``cast`` when set: cast once per forward, for all chunks
        (autocast would cast per call)."""
        weights = cast(list[Tensor], list(self.lstm._flat_weights))  # bias=True: no None among them
        return weights if self.cast is None else [w.to(self.cast) for w in weights]

    def _last(self, x: Tensor) -> Tensor:
        """h_{K-1} of the LSTM from a zero state, optionally in ``cast`` and over batch chunks."""
        if not self.chunk and self.cast is None:
            return self.lstm(x)[0][:, -1]
        lstm, weights = self.lstm, self._weights()
        if self.cast is not None:
            x = x.to(self.cast)
        out = []
        for part in x.split(self.chunk or x.shape[0]):
            h0 = part.new_zeros(lstm.num_layers, part.shape[0], lstm.hidden_size)
            y = torch._VF.lstm(
                part, (h0, h0), weights, lstm.bias, lstm.num_layers, 0.0, self.training, False, True
            )
            out.append(y[0][:, -1])
        return torch.cat(out).to(self.input_weight.dtype)

    def _packed(self, x: Tensor, mask: Tensor) -> Tensor:
        k = x.shape[1]
        lengths = mask.sum(1).clamp(min=1)  # the current frame is always valid; guard all-False rows
        shift = k - lengths
        # right-padded copy: row b, slot j <- slot (j + shift_b) mod K, so slots 0..len_b-1 are valid
        src = (torch.arange(k, device=x.device).unsqueeze(0) + shift.unsqueeze(1)) % k
        x = x.gather(1, src.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n comes back in the original batch order
        return h_n[-1]


# ---------------------------------------------------------------------------------------------------
# Dueling IQN head and the full network


class DuelingHead(nn.Module):
    """Separate noisy value and advantage streams; ``Q = V + A - mean(A)``."""

    def __init__(self, in_features: int, config: NetworkConfig) -> None:
        super().__init__()

        def stream(out: int) -> nn.Sequential:
            norm = nn.LayerNorm(config.hidden) if config.layer_norm else nn.Identity()
            return nn.Sequential(
                NoisyLinear(in_features, config.hidden, config.noisy_sigma0),
                norm,
                nn.ReLU(),
                NoisyLinear(config.hidden, out, config.noisy_sigma0),
            )

        self.value = stream(1)
        self.advantage = stream(config.n_actions)

    def forward(self, x: Tensor, advantages_only: bool = False) -> Tensor:
        adv = self.advantage(x)
        if advantages_only:  # same argmax as Q, one stream cheaper (BTR acts this way)
            return adv
        return self.value(x) + adv - adv.mean(dim=-1, keepdim=True)


class Encoded(NamedTuple):
    """A state encoding and the context stream's values that made it (the learner's statistics)."""

    z: Tensor  # (B, feature_dim) state feature
    gate: Tensor | None  # (B, conv_features) sigmoid(Omega(h)) of the multiplicative gate, else None
    lstm: Tensor | None  # (B, lstm_hidden) the context LSTM's h_{K-1}, None when K = 0


class RiseNetwork(nn.Module):
    """BTR's IQN network, optionally with the RISE context stream gating the CNN features.

    ``forward(frames, context, mask, n_tau, taus) -> (quantiles (B, n_tau, A), taus (B, n_tau))``.
    ``encode`` + ``quantiles`` split the same computation so one state encoding can serve several
    tau sets (the state encoding has no noise; only the dueling head does).
    """

    cos_freqs: Tensor  # a buffer, declared for the type checker

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.cnn = ImpalaCNN(config)
        conv_w = config.conv_features
        self.context: ContextStream | None = None
        self.combine_proj: nn.Linear | None = None
        if config.context_len > 0:
            self.context = ContextStream(config)
            out = config.concat_dim if config.combine == "concat" else conv_w
            self.combine_proj = nn.Linear(config.lstm_hidden, out)
        self.feature_dim = config.feature_dim
        self.cos_embedding = nn.Linear(config.n_cos, self.feature_dim)
        self.register_buffer(
            "cos_freqs", math.pi * torch.arange(config.n_cos, dtype=torch.float32), persistent=False
        )
        self.head = DuelingHead(self.feature_dim, config)

    # -- state encoding ------------------------------------------------------------------------------

    def encode(self, frames: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """State feature z (B, feature_dim): CNN features of ``frames`` combined with the context stream.

        ``frames``: uint8 (B, frame_stack, H, W) in [0, 255]. ``context``: (B, K, embed_dim) stored
        embeddings, current frame at index K-1, required iff ``config.context_len > 0``. ``mask``:
        (B, K) bool, False on padded slots; None means all valid.
        """
        return self.encode_aux(frames, context, mask).z

    def encode_aux(
        self, frames: Tensor, context: Tensor | None = None, mask: Tensor | None = None
    ) -> Encoded:
        """:meth:`encode` with the gate and the LSTM output that went into it."""
        feat = self.cnn(frames)
        if self.context is None:
            if context is not None:
                raise ValueError("this network has context_len=0 (plain BTR); pass context=None")
            return Encoded(feat, None, None)
        if context is None:
            raise ValueError(f"context (B, K, {self.config.embed_dim}) is required when context_len > 0")
        lstm = self.context(context, mask)
        assert self.combine_proj is not None  # built with the context stream
        h = self.combine_proj(lstm)
        if self.config.combine == "multiply":
            gate = torch.sigmoid(h)  # RISE's attention-like gate
            return Encoded(feat * gate, gate, lstm)
        if self.config.combine == "add":
            return Encoded(feat + h, None, lstm)
        return Encoded(torch.cat([feat, h], dim=-1), None, lstm)

    @property
    def channels_last(self) -> bool:
        """Whether the CNN runs in the NHWC layout (see :meth:`set_layout`)."""
        return self.cnn.channels_last

    def set_layout(
        self,
        channels_last: bool,
        lstm_chunk: int,
        lstm_cast: torch.dtype | None,
        lstm_traceable: bool = False,
    ) -> None:
        """Speed layouts, same math: NHWC CNN weights, and the context LSTM in batch chunks / another dtype
        / as a traceable loop (see :meth:`ContextStream.set_layout`)."""
        if channels_last:
            self.cnn.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub omits it
        if self.context is not None:
            self.context.set_layout(lstm_chunk, lstm_cast, lstm_traceable)

    # -- IQN head ------------------------------------------------------------------------------------

    def sample_taus(self, batch: int, n_tau: int, device: torch.device | None = None) -> Tensor:
        """tau ~ U(0, 1), shape (batch, n_tau)."""
        return torch.rand(batch, n_tau, device=device or self.cos_freqs.device)

    def quantiles(
        self, z: Tensor, n_tau: int = 8, taus: Tensor | None = None, advantages_only: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Quantile values (B, N, A) of encoded states ``z`` at ``taus`` (B, N), sampled if None."""
        b, w = z.shape
        if taus is None:
            taus = self.sample_taus(b, n_tau, z.device)
        n = taus.shape[1]
        # cos in fp32 (taus near 1 times 63*pi lose precision in bf16), then the layer's own dtype
        cos = torch.cos(taus.float().unsqueeze(-1) * self.cos_freqs).to(self.cos_embedding.weight.dtype)
        phi = F.relu(self.cos_embedding(cos))  # (B, N, W)
        x = (z.unsqueeze(1) * phi).reshape(b * n, w)
        out = self.head(x, advantages_only=advantages_only)
        return out.view(b, n, -1), taus

    # -- public API ----------------------------------------------------------------------------------

    def forward(
        self,
        frames: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        n_tau: int = 8,
        taus: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Quantiles (B, n_tau, A) and the taus (B, n_tau) they were evaluated at."""
        return self.quantiles(self.encode(frames, context, mask), n_tau=n_tau, taus=taus)

    def q_values(
        self,
        frames: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        n_tau: int = 8,
        advantages_only: bool = False,
    ) -> Tensor:
        """Q(s, .) (B, A) as the mean over ``n_tau`` sampled quantiles (advantages only if asked)."""
        q, _ = self.quantiles(
            self.encode(frames, context, mask), n_tau=n_tau, advantages_only=advantages_only
        )
        return q.mean(dim=1)

    def reset_noise(self) -> None:
        """Resample the noise of all noisy layers."""
        reset_noise(self)


def default_channels_last(device: torch.device) -> bool:
    """The CNN layout when a config leaves it open: NHWC on the CPU, where oneDNN's NHWC convolutions made an
    84x84 update 1.40-1.70x and a batch-8 acting forward 1.9x faster at the same math
    (``benchmarks/cnn_layout.py``, docs/deviations.md); NCHW on CUDA, where it was not measured."""
    return device.type == "cpu"


def make_network(config: NetworkConfig) -> RiseNetwork:
    """The one factory training, evaluation and tests build networks with."""
    return RiseNetwork(config)


def count_parameters(net: nn.Module, include_noise_sigma: bool = True) -> int:
    """Number of trainable parameters; ``include_noise_sigma=False`` counts each noisy layer once (mu only).

    BTR's "2.91M parameters, 2.52M in linear layers" counts noisy layers without their sigma.
    """
    total = 0
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        if not include_noise_sigma and name.endswith(("weight_sigma", "bias_sigma")):
            continue
        total += p.numel()
    return total
