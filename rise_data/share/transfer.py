"""Export a store to, or import one from, HDF5 or Minari: picks the format and calls its writer."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

from rise_data.options import ConfigError
from rise_data.share.h5io import ExportConfig, ImportConfig, export_hdf5, import_hdf5
from rise_data.share.minari_io import MinariImportConfig, import_minari  # minari itself loads lazily

__all__ = ["export_format", "export_store", "import_format", "import_store"]

FORMATS = ("hdf5", "minari")


def _given(fmt: str) -> str | None:
    if fmt == "auto":
        return None
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be auto, hdf5 or minari, got '{fmt}'")
    return fmt


def _named_format(name: str) -> str | None:
    """The format a path or id names by its form (``minari:ID``, an ``.h5``/``.hdf5`` file), else None."""
    if name.startswith("minari:"):
        return "minari"
    if name.lower().endswith((".h5", ".hdf5")):
        return "hdf5"
    return None


def export_format(output: str, fmt: str = "auto") -> str:
    """``fmt``, or for ``auto`` the format ``output`` names (``minari:ID`` or an ``.h5`` file)."""
    found = _given(fmt) or _named_format(output)
    if found:
        return found
    raise ConfigError(
        f"cannot tell the format of '{output}': name an .h5 file or minari:DATASET_ID, or pass --format"
    )


def import_format(source: str, fmt: str = "auto") -> str:
    """``fmt``, or for ``auto`` the format of ``source`` (``minari:ID``, an ``.h5`` file, a Minari folder)."""
    found = _given(fmt) or _named_format(source)
    if found:
        return found
    p = Path(source)
    if (p / "metadata.json").exists() or (p / "data" / "metadata.json").exists():
        return "minari"
    if not p.exists():
        raise FileNotFoundError(errno.ENOENT, "does not exist", source)
    raise ConfigError(
        f"cannot tell the format of '{source}': give an .h5 file, minari:ID or a Minari dataset directory"
    )


def export_store(config: ExportConfig) -> dict:
    """Write the store to the format ``config`` names; the writer's summary plus ``"format"``."""
    config = dataclasses.replace(config, format=export_format(config.output, config.format))
    if config.format == "minari":
        from rise_data.share.minari_io import export_minari  # minari is an optional dependency

        return {**export_minari(config), "format": "minari"}
    return {**export_hdf5(config), "format": "hdf5"}


def import_store(config: ImportConfig, mapping: MinariImportConfig | None = None) -> dict:
    """A new store from the HDF5 export or Minari dataset ``config`` names (a foreign Minari dataset
    mapped as ``mapping`` says); the reader's summary."""
    config = dataclasses.replace(config, format=import_format(config.source, config.format))
    if config.format == "minari":
        return {**import_minari(config, mapping or MinariImportConfig()), "format": "minari"}
    return {**import_hdf5(config), "format": "hdf5"}
