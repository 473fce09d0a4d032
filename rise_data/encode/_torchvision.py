"""The one place that imports torchvision (use ``import_torchvision()``, never ``import torchvision``).

PyPI's torchvision 0.28.0 wheel is a CUDA build; next to the CPU torch 2.13.0 its compiled ops are not
registered, and ``import torchvision`` dies in ``_meta_registrations.py`` with "operator torchvision::nms
does not exist" (pytorch/vision#9085). Only ``nms``/``qnms`` are registered there without a guard, so we
define those two op schemas first when (and only when) the real ops are missing. ``torchvision.models``
then works; ``torchvision.ops``/``torchvision.io`` stay unusable under the shim.
"""

from __future__ import annotations

import types

import torch

_TV_LIB: torch.library.Library | None = None  # must stay referenced, or the schemas are unregistered
_TORCHVISION: types.ModuleType | None = None


def _real_nms_registered() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018 - the attribute lookup is the check
    except (AttributeError, RuntimeError):
        return False
    return True


def _define_missing_schemas() -> None:
    global _TV_LIB
    if _TV_LIB is not None or _real_nms_registered():
        return
    _TV_LIB = torch.library.Library("torchvision", "DEF")
    _TV_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TV_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def import_torchvision() -> types.ModuleType:
    """Import and return ``torchvision`` (cached), shimming the missing op schemas if needed."""
    global _TORCHVISION
    if _TORCHVISION is None:
        _define_missing_schemas()
        import torchvision

        _TORCHVISION = torchvision
    return _TORCHVISION
