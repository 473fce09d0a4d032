"""Encoding a real store: values, provenance, resumption, refusal, appended rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rise_data.check import check_store
from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.encoders import make_encoder, sha256_file
from rise_data.store import StoreError, open_store

PLUGIN = '''
import torch
from rise_data.encoders import make_encoder

CALLS = {"n": 0}

def failing(weights=None, source="frame"):
    """downsample, but the 3rd batch raises: a crash in the middle of an encode."""
    enc = make_encoder("downsample", source=source)
    inner = enc.model

    class Boom(torch.nn.Module):
        def forward(self, x):
            CALLS["n"] += 1
            if CALLS["n"] == 3:
                raise RuntimeError("boom")
            return inner(x)

    enc.model = Boom()
    enc.name = "downsample"
    return enc
'''


def _cfg(path, **kw):
    return EncodeConfig(store=path, progress=False, batch_size=64, **kw)


def test_downsample_values_and_provenance(pong_copy):
    out = encode(_cfg(pong_copy, encoder="downsample"))
    s = open_store(pong_copy)
    assert out["complete"] and out["rows"] == s.rows
    emb = s.embedding("downsample")
    assert emb.shape == (s.rows, 256) and str(emb.dtype) == "float16"
    ref = make_encoder("downsample")(torch.from_numpy(s.read("frame", 0, 100))).numpy().astype(np.float16)
    assert np.array_equal(emb[:100], ref)
    meta = s.embedding_meta("downsample")
    assert (
        meta["rows_done"] == s.rows
        and meta["weights_id"] == "none"
        and meta["preprocessing"]["source"] == "frame"
    )
    assert meta["config"]["encoder"] == "downsample"
    assert check_store(pong_copy) == []
    # rerun: nothing to do
    assert encode(_cfg(pong_copy, encoder="downsample"))["rows"] == 0


def test_resnet18_from_state_dict_file(pong_copy, tmp_path):
    from rise_data._torchvision import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(tv.models.resnet18(weights=None).state_dict(), weights)
    encode(_cfg(pong_copy, encoder="resnet18", weights=str(weights), source="obs"))
    s = open_store(pong_copy)
    meta = s.embedding_meta("resnet18")
    assert meta["weights_id"] == f"sha256:{sha256_file(weights)}"
    assert meta["dim"] == 512 and meta["output_layer"] and meta["preprocessing"]["source"] == "obs"
    emb = s.embedding("resnet18")[:]
    assert emb.shape == (s.rows, 512) and np.isfinite(emb).all()
    ref = make_encoder("resnet18", weights=weights, source="obs")(torch.from_numpy(s.read("obs", 0, 8)))
    np.testing.assert_allclose(emb[:8].astype(np.float32), ref.numpy(), rtol=1e-2, atol=1e-2)
    # same name, other weights: refused, nothing overwritten; --overwrite redoes
    with pytest.raises(StoreError, match="different"):
        encode(_cfg(pong_copy, encoder="resnet18", weights="untrained", source="obs"))
    assert np.array_equal(open_store(pong_copy).embedding("resnet18")[:], emb)
    encode(_cfg(pong_copy, encoder="resnet18", weights="untrained", source="obs", overwrite=True))
    assert open_store(pong_copy).embedding_meta("resnet18")["weights_id"] == "untrained"


def test_crash_then_resume_matches_clean_run(pong_copy, tmp_path, monkeypatch):
    (tmp_path / "failing_enc.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RuntimeError, match="boom"):
        encode(_cfg(pong_copy, encoder="failing_enc:failing", name="ds", read_workers=1, prefetch=1))
    s = open_store(pong_copy)
    done = s.embedding_meta("ds")["rows_done"]
    assert 0 < done < s.rows
    problems = check_store(pong_copy)
    assert problems and all(p.severity == "warning" and "incomplete" in p.message for p in problems)
    out = encode(_cfg(pong_copy, encoder="failing_enc:failing", name="ds"))
    assert out["complete"] and out["rows"] == s.rows - done
    encode(_cfg(pong_copy, encoder="downsample", name="clean"))
    s = open_store(pong_copy)
    assert np.array_equal(s.embedding("ds")[:], s.embedding("clean")[:])
    assert check_store(pong_copy) == []


def test_appended_rows_are_encoded_on_rerun(pong_copy):
    encode(_cfg(pong_copy, encoder="downsample"))
    before = open_store(pong_copy).rows
    collect(CollectConfig("ALE/Pong-v5", pong_copy, steps=30, envs=1, seed=5, progress=False))
    s = open_store(pong_copy)
    assert (
        s.embedding("downsample").shape[0] == s.rows and s.embedding_meta("downsample")["rows_done"] == before
    )
    out = encode(_cfg(pong_copy, encoder="downsample"))
    assert out["rows"] == s.rows - before and check_store(pong_copy) == []


def test_missing_source_array(tmp_path):
    path = str(tmp_path / "nof.zarr")
    collect(CollectConfig("ALE/Pong-v5", path, steps=20, envs=1, frames=False, progress=False))
    with pytest.raises(StoreError, match="--source obs"):
        encode(_cfg(path, encoder="downsample", source="frame"))
    assert encode(_cfg(path, encoder="downsample"))["complete"]  # defaults to obs without frames
