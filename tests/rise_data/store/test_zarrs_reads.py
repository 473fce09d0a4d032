"""RISE_ZARRS=1: readers decode with zarrs' codec pipeline, writers keep zarr-python's, and nothing else changes."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from rise_data.store import StoreError, open_store
from rise_data.store import pipeline as store_pipeline
from rise_data.store.check import check_store

needs_zarrs = pytest.mark.skipif(
    importlib.util.find_spec("zarrs") is None, reason="pip install 'rise[zarrs]'"
)


def pipeline_of(arr) -> str:
    return type(arr._async_array.codec_pipeline).__name__


@needs_zarrs
def test_readers_use_zarrs_writers_do_not(pong_copy, monkeypatch):
    want = {name: open_store(pong_copy).read(name) for name in ("obs", "frame", "action")}
    monkeypatch.setenv("RISE_ZARRS", "1")
    reader = open_store(pong_copy)
    assert pipeline_of(reader.array("obs")) == "ZarrsCodecPipeline"
    for name, rows in want.items():
        np.testing.assert_array_equal(reader.read(name), rows)
    assert check_store(pong_copy) == []
    writer = open_store(pong_copy, mode="a")
    assert pipeline_of(writer.array("obs")) == "BatchedCodecPipeline"
    monkeypatch.setenv("RISE_ZARRS", "0")
    assert pipeline_of(open_store(pong_copy).array("obs")) == "BatchedCodecPipeline"


def test_the_switch_without_zarrs_names_the_install(pong_store, monkeypatch):
    monkeypatch.setenv("RISE_ZARRS", "1")
    monkeypatch.setattr(store_pipeline.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        StoreError, match=r"RISE_ZARRS=1 needs the zarrs package: pip install 'rise\[zarrs\]'"
    ):
        open_store(pong_store).array("obs")
