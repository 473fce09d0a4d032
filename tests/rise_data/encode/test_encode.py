"""Encoding a real store: values, provenance, resumption, refusal, appended rows."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rise_data.cli import app
from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.encode.encoders import embedding_encoder, make_encoder, sha256_file
from rise_data.encode.spec import EncoderError
from rise_data.store import StoreError, open_store
from rise_data.store.check import check_store
from rise_data.store.format import ATTR

PLUGIN = '''
import torch
from rise_data.encode.encoders import make_encoder

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
    assert set(meta) == {"encoder", "dtype", "versions", "config", "created", "rows_done"}
    assert meta["encoder"] == make_encoder("downsample").spec.to_json()  # exactly what rebuilds it
    assert meta["rows_done"] == s.rows and meta["dtype"] == "float16"
    assert set(meta["versions"]) == {"rise", "torch", "torchvision"}
    assert meta["config"]["encoder"] == "downsample"
    assert check_store(pong_copy) == []
    # rerun: nothing to do
    assert encode(_cfg(pong_copy, encoder="downsample"))["rows"] == 0


def test_resnet18_from_state_dict_file(cue_copy, tmp_path):  # ~100 rows: resnet18 on a CPU is the cost
    from rise_data.encode._torchvision import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(tv.models.resnet18(weights=None).state_dict(), weights)
    encode(_cfg(cue_copy, encoder="resnet18", weights=str(weights), source="obs"))
    s = open_store(cue_copy)
    spec = embedding_encoder(s, "resnet18")
    assert spec.weights_id == f"sha256:{sha256_file(weights)}" and spec.weights == str(weights.resolve())
    assert spec.dim == 512 and spec.output_layer == "avgpool" and spec.source == "obs"
    emb = s.embedding("resnet18")[:]
    assert emb.shape == (s.rows, 512) and np.isfinite(emb).all()
    ref = make_encoder("resnet18", weights=weights, source="obs")(torch.from_numpy(s.read("obs", 0, 8)))
    np.testing.assert_allclose(emb[:8].astype(np.float32), ref.numpy(), rtol=1e-2, atol=1e-2)
    # same name, other weights: refused, nothing overwritten; --overwrite redoes
    with pytest.raises(StoreError, match="different"):
        encode(_cfg(cue_copy, encoder="resnet18", weights="untrained", source="obs"))
    assert np.array_equal(open_store(cue_copy).embedding("resnet18")[:], emb)
    encode(_cfg(cue_copy, encoder="resnet18", weights="untrained", source="obs", overwrite=True))
    assert embedding_encoder(open_store(cue_copy), "resnet18").weights_id == "untrained"


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
    collect(CollectConfig("ALE/Pong-v5", pong_copy, steps=30, num_envs=1, seed=5, progress=False))
    s = open_store(pong_copy)
    assert (
        s.embedding("downsample").shape[0] == s.rows and s.embedding_meta("downsample")["rows_done"] == before
    )
    out = encode(_cfg(pong_copy, encoder="downsample"))
    # from the 64-row read block holding the old end: the batches of a fresh run, so the same values
    assert out["rows"] == s.rows - before // 64 * 64 and check_store(pong_copy) == []
    encode(_cfg(pong_copy, encoder="downsample", name="fresh"))
    s = open_store(pong_copy)
    assert np.array_equal(s.embedding("downsample")[:], s.embedding("fresh")[:])


def test_missing_source_array(tmp_path):
    path = str(tmp_path / "nof.zarr")
    collect(CollectConfig("ALE/Pong-v5", path, steps=20, num_envs=1, frames=False, progress=False))
    with pytest.raises(StoreError, match="--source obs"):
        encode(_cfg(path, encoder="downsample", source="frame"))
    assert encode(_cfg(path, encoder="downsample"))["complete"]  # defaults to obs without frames


SIDE_EFFECT_PLUGIN = """
from pathlib import Path
import torch
from torch import nn
from rise_data.encode.encoders import Encoder
from rise_data.encode.spec import Preprocessing

Path(__file__).with_name("imported.txt").write_text("imported")  # visible proof that this code ran


def build(weights=None, source="frame"):
    pre = Preprocessing(source=source, resolution=(8, 8), channels="gray", mean=(0.5,), std=(0.5,))
    with torch.random.fork_rng():  # deterministic weights: the id "tiny:v1" must mean these values
        torch.manual_seed(7)
        net = nn.Sequential(nn.Flatten(1), nn.Linear(64, 6))
    return Encoder("tiny", net, 6, "linear", "tiny:v1", pre)
"""


def test_plugin_store_record_rebuilds_encoder_only_when_allowed(pong_copy, tmp_path, monkeypatch):
    """The store's record rebuilds a plug-in encoder (values equal), but never imports it unasked."""
    (tmp_path / "sidefx_enc.py").write_text(SIDE_EFFECT_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sidefx_enc", raising=False)
    out = CliRunner().invoke(
        app, ["encode", pong_copy, "--encoder", "sidefx_enc:build", "--name", "t", "--quiet"]
    )
    assert out.exit_code == 0, out.output
    marker = tmp_path / "imported.txt"
    assert marker.exists()
    marker.unlink()
    del sys.modules["sidefx_enc"]  # as in a fresh process that reads the store

    s = open_store(pong_copy)
    spec = embedding_encoder(s, "t")
    assert spec.name == "sidefx_enc:build" and spec.weights_id == "tiny:v1" and spec.dim == 6
    with pytest.raises(
        EncoderError, match=r"needs plug-in encoder 'sidefx_enc:build'; rerun with --allow-plugin"
    ):
        spec.build(where=f"embeddings 't' of {s.path}")
    assert not marker.exists() and "sidefx_enc" not in sys.modules

    enc = spec.build(allowed_plugins=["sidefx_enc:build"])
    rows = torch.from_numpy(s.read("frame", 0, 50))
    assert np.array_equal(s.embedding("t")[:50], enc(rows).numpy().astype(np.float16))


def test_check_refuses_an_unparseable_encoder_record(pong_copy):
    encode(_cfg(pong_copy, encoder="downsample"))
    arr = open_store(pong_copy, mode="a").embedding("downsample")
    meta = dict(arr.attrs)[ATTR]
    for bad, key in [
        ({**meta, "encoder": {k: v for k, v in meta["encoder"].items() if k != "dim"}}, "dim"),
        ({**meta, "encoder": "downsample"}, "'encoder'"),
    ]:
        arr.attrs[ATTR] = bad
        problems = check_store(pong_copy)
        assert [p.severity for p in problems] == ["error"], problems
        assert "embeddings/downsample" in problems[0].where and key in problems[0].message
        with pytest.raises(EncoderError, match="embeddings 'downsample'"):
            embedding_encoder(open_store(pong_copy), "downsample")
    arr.attrs[ATTR] = meta
    assert check_store(pong_copy) == []


def test_resume_identity_is_spec_and_dtype(pong_copy, tmp_path):
    """A moved weights file continues the same embeddings; other dtype or weights are refused."""
    from rise_data.encode._torchvision import import_torchvision

    torch.manual_seed(1)
    weights = tmp_path / "a.pth"
    torch.save(import_torchvision().models.resnet18(weights=None).state_dict(), weights)
    kw = {"encoder": "resnet18", "source": "obs", "name": "r"}
    encode(_cfg(pong_copy, weights=str(weights), **kw))
    moved = tmp_path / "moved.pth"
    weights.rename(moved)
    assert encode(_cfg(pong_copy, weights=str(moved), **kw))["complete"]
    with pytest.raises(StoreError, match="different dtype"):
        encode(_cfg(pong_copy, weights=str(moved), dtype="float32", **kw))
    with pytest.raises(StoreError, match="different weights_id"):
        encode(_cfg(pong_copy, weights="untrained", **kw))
