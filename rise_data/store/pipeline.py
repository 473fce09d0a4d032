"""The codec pipeline readers open arrays with: zarr-python's own, or zarrs' (Rust) with ``RISE_ZARRS=1``.

zarrs (``pip install 'rise[zarrs]'``) decodes whole-store reads and ``check`` about 3x faster here
(docs/scale.md "Stores at scale"), but the zstd frames it writes are not byte-identical to zarr-python's.
So only a store opened for reading uses it: a writer keeps zarr-python's pipeline and writes the bytes it
always wrote.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

import zarr

from rise_data.store.format import StoreError

ENV = "RISE_ZARRS"
ZARRS = "zarrs.ZarrsCodecPipeline"


def reading() -> contextlib.AbstractContextManager:
    """A context in which arrays opened get the readers' codec pipeline (zarrs when ``RISE_ZARRS=1``)."""
    if os.environ.get(ENV, "0") in ("", "0"):
        return contextlib.nullcontext()
    if importlib.util.find_spec("zarrs") is None:
        raise StoreError(f"{ENV}=1 needs the zarrs package: pip install 'rise[zarrs]' (or unset {ENV})")
    return zarr.config.set({"codec_pipeline.path": ZARRS})
