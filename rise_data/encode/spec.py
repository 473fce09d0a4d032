"""The encoder record: :class:`EncoderSpec` and its :class:`Preprocessing`, as JSON, without torch.

What an embeddings array's ``encoder`` attribute (and a checkpoint) records about the frozen encoder that
made it. ``EncoderSpec.to_json`` writes exactly what ``from_json`` reads back, strictly (a record is never
guessed at). Readers that only parse a record (``rise-data check``, ``info``, the share commands) import
this module and never torch; rebuilding the encoder is :mod:`rise_data.encode.encoders`' job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from rise_data.errors import UserError

SOURCES = ("frame", "obs")


class EncoderError(UserError):
    """An encoder cannot be built or applied as asked; the one-line message says what to do."""


def _one_line(text: object, limit: int = 400) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


@dataclass(frozen=True)
class Preprocessing:
    """How uint8 store rows become the model's float input (recorded in provenance)."""

    source: str  # store array read: "frame" (RGB HxWx3 uint8) or "obs" (gray HxW uint8)
    resolution: tuple[int, int] | None  # (H, W) to resize to before the model; None = native size
    channels: str  # "rgb" or "gray": what the model receives (gray input replicated for rgb models)
    mean: tuple[float, ...]  # per channel, applied after scaling uint8 to [0, 1]
    std: tuple[float, ...]
    resize: str = "bilinear-antialias"  # or "area" (adaptive average pooling)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise EncoderError(f"preprocessing source must be one of {SOURCES}, got {self.source!r}")
        if self.channels not in ("rgb", "gray"):
            raise EncoderError(f"preprocessing channels must be 'rgb' or 'gray', got {self.channels!r}")
        n = 3 if self.channels == "rgb" else 1
        if len(self.mean) != n or len(self.std) != n:
            raise EncoderError(f"{self.channels} preprocessing needs {n} mean and std values")
        if self.resize not in ("bilinear-antialias", "area"):
            raise EncoderError(
                f"preprocessing resize must be 'bilinear-antialias' or 'area', got {self.resize!r}"
            )
        if self.resolution is not None:
            object.__setattr__(self, "resolution", (int(self.resolution[0]), int(self.resolution[1])))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "resolution": list(self.resolution) if self.resolution is not None else None,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
        }

    @classmethod
    def from_json(cls, d: Mapping) -> Preprocessing:
        """Inverse of ``to_json``; missing, unknown or mistyped keys raise ``EncoderError`` naming them."""
        _exact_keys(d, PREPROCESSING_KEYS, "preprocessing")
        res = d["resolution"]
        if res is not None and not (isinstance(res, list) and len(res) == 2 and all(_is_int(v) for v in res)):
            raise EncoderError(f"preprocessing key 'resolution' must be null or [H, W], got {res!r}")
        for key in ("mean", "std"):
            if not (isinstance(d[key], list) and all(isinstance(v, int | float) for v in d[key])):
                raise EncoderError(f"preprocessing key '{key}' must be a list of numbers, got {d[key]!r}")
        for key in ("source", "channels", "resize"):
            if not isinstance(d[key], str):
                raise EncoderError(f"preprocessing key '{key}' must be a string, got {d[key]!r}")
        return cls(
            d["source"], None if res is None else tuple(res), d["channels"], d["mean"], d["std"], d["resize"]
        )


PREPROCESSING_KEYS = ("source", "resolution", "channels", "mean", "std", "resize")
SPEC_KEYS = ("name", "weights", "weights_id", "source", "dim", "output_layer", "preprocessing")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _exact_keys(d: object, keys: tuple[str, ...], what: str) -> None:
    """Strict record reading: the keys must be exactly ``keys`` (a record is never guessed at)."""
    if not isinstance(d, Mapping):
        raise EncoderError(f"{what} must be a JSON object, got {type(d).__name__} {_one_line(d, 60)!r}")
    missing = [k for k in keys if k not in d]
    unknown = sorted(str(k) for k in d if k not in keys)
    if missing or unknown:
        parts = ([f"lacks key(s) {', '.join(missing)}"] if missing else []) + (
            [f"has unknown key(s) {', '.join(unknown)}"] if unknown else []
        )
        raise EncoderError(f"{what} {' and '.join(parts)} (expected exactly: {', '.join(keys)})")


@dataclass(frozen=True)
class EncoderSpec:
    """What a frozen encoder is, as JSON that rebuilds it (zarr-codec style: ``from_json(to_json())`` is equal).

    Rebuilding it needs torch: ``rise_data.encode.encoders.EncoderSpec`` is this record with ``build``.

    ``name``: registry name or ``module:function``. ``weights``: where the weights came from, as given (a file,
    recorded as an absolute path when it exists; ``"untrained"``; or None = the encoder's default source).
    ``weights_id``: what they are (``sha256:<hex>`` of the file, or an id the encoder defines). ``source``:
    the store array encoded. Identity (``differences``) is every field but ``weights``: a moved file is the
    same encoder.
    """

    name: str
    weights: str | None
    weights_id: str
    source: str
    dim: int
    output_layer: str
    preprocessing: Preprocessing

    def __post_init__(self) -> None:
        for key in ("name", "weights_id", "output_layer"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise EncoderError(
                    f"encoder record key '{key}' must be a non-empty string, got {getattr(self, key)!r}"
                )
        if self.weights is not None and not isinstance(self.weights, str):
            raise EncoderError(f"encoder record key 'weights' must be a string or null, got {self.weights!r}")
        if not _is_int(self.dim) or self.dim <= 0:
            raise EncoderError(f"encoder record key 'dim' must be a positive integer, got {self.dim!r}")
        if not isinstance(self.preprocessing, Preprocessing):
            raise EncoderError("encoder record key 'preprocessing' must be a Preprocessing")
        if self.source != self.preprocessing.source:
            raise EncoderError(
                f"encoder record key 'source' is {self.source!r} but its preprocessing reads {self.preprocessing.source!r}"
            )

    @property
    def is_plugin(self) -> bool:
        return ":" in self.name

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "weights": self.weights,
            "weights_id": self.weights_id,
            "source": self.source,
            "dim": self.dim,
            "output_layer": self.output_layer,
            "preprocessing": self.preprocessing.to_json(),
        }

    @classmethod
    def from_json(cls, d: Mapping) -> Self:
        """Inverse of ``to_json``; missing, unknown or mistyped keys raise ``EncoderError`` naming them."""
        _exact_keys(d, SPEC_KEYS, "encoder record")
        if d["source"] not in SOURCES:
            raise EncoderError(
                f"encoder record key 'source' must be one of {', '.join(SOURCES)}, got {d['source']!r}"
            )
        return cls(
            **{k: d[k] for k in SPEC_KEYS if k != "preprocessing"},
            preprocessing=Preprocessing.from_json(d["preprocessing"]),
        )

    def differences(self, other: EncoderSpec) -> list[str]:
        """Fields (other than ``weights``) in which ``other`` describes a different encoder."""
        return [k for k in SPEC_KEYS if k != "weights" and getattr(self, k) != getattr(other, k)]


def record_encoder(
    record: Any, where: str, fix: str = "re-encode it", cls: type[EncoderSpec] = EncoderSpec
) -> EncoderSpec:
    """The ``EncoderSpec`` in an embeddings record (its ``encoder`` key); EncoderError names ``where`` and the key."""
    rec = upgrade_record(record).get("encoder") if isinstance(record, Mapping) else None
    if not isinstance(rec, Mapping):
        what = "missing" if rec is None else f"{_one_line(rec, 60)!r}, not an encoder record (an older rise?)"
        raise EncoderError(f"{where}: attribute 'encoder' is {what}; {fix}")
    try:
        return cls.from_json(rec)
    except EncoderError as e:
        raise EncoderError(f"{where}: {e}; {fix}") from None


def embedding_encoder(store: Any, name: str, cls: type[EncoderSpec] = EncoderSpec) -> EncoderSpec:
    """The ``EncoderSpec`` recorded with embeddings ``name`` of ``store``; EncoderError names a bad record."""
    fix = f"re-encode with rise-data encode {store.path} --encoder NAME --name {name} --overwrite"
    return record_encoder(store.embedding_meta(name), f"embeddings '{name}' of {store.path}", fix, cls)


def upgrade_record(meta: Mapping) -> dict:
    """An embeddings array's attributes in the current layout (store format 2), from any layout a store of
    format 1 may hold: format 1 first kept the encoder flat (``encoder``/``name`` the name, ``weights_id``,
    ``weights_file``, ``preprocessing``, ``output_layer``, ``dim``, ``*_version``), later under ``encoder``.
    Records already in the current layout, or not recognisably either, are returned as they are."""
    meta = dict(meta)
    old = isinstance(meta.get("encoder"), str) and all(
        k in meta for k in ("weights_id", "preprocessing", "dim")
    )
    if not old:
        return meta
    name = meta.pop("encoder")
    pre = meta.pop("preprocessing", None)
    weights_id = meta.pop("weights_id", None)
    weights = meta.pop("weights_file", None) or (weights_id if weights_id == "untrained" else None)
    versions = {k.removesuffix("_version"): meta.pop(k, None) for k in ("rise_version", "torch_version")}
    versions["torchvision"] = meta.pop("torchvision_version", None)
    meta.pop("name", None)
    meta["encoder"] = {
        "name": name,
        "weights": weights,
        "weights_id": weights_id,
        "source": pre.get("source") if isinstance(pre, Mapping) else None,
        "dim": meta.pop("dim", None),
        "output_layer": meta.pop("output_layer", None),
        "preprocessing": pre,
    }
    meta.setdefault("versions", versions)
    return meta
