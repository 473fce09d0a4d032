"""The store format: layout, commit point, recovery, and plain-Zarr readability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from rise_data.envs import env_spec
from rise_data.store import Episode, StoreError, create_store, open_store
from rise_data.store.check import check_store
from rise_data.store.format import ATTR


def _episodes(rng, n, frame_shape=(8, 6, 3)):
    out = []
    for i in range(n):
        t = int(rng.integers(0, 7))
        term = bool(rng.integers(2))
        out.append(
            Episode(
                obs=rng.integers(0, 255, (t + 1, 84, 84), dtype=np.uint8),
                frame=rng.integers(0, 255, (t + 1, *frame_shape), dtype=np.uint8),
                action=rng.integers(0, 3, t),
                reward=rng.normal(size=t).astype(np.float32),
                terminated=term,
                truncated=not term,
                env_index=i,
            )
        )
    return out


@pytest.fixture()
def spec():
    return {**env_spec("rise/CueMemory-v0"), "frame_shape": [8, 6, 3]}


def test_append_round_trip_bit_for_bit(tmp_path, spec):
    rng = np.random.default_rng(0)
    store = create_store(tmp_path / "s.zarr", spec, (84, 84), (8, 6, 3))
    eps = _episodes(rng, 5) + _episodes(rng, 1)
    store.append_episodes(eps[:5])
    store.append_episodes(eps[5:])
    s = open_store(tmp_path / "s.zarr")
    assert s.rows == sum(e.length + 1 for e in eps) and s.num_episodes == 6
    ep = s.episodes()
    for i, e in enumerate(eps):
        a, b = ep["start"][i], ep["start"][i] + e.length + 1
        assert np.array_equal(s.read("obs", a, b), e.obs)
        assert np.array_equal(s.read("frame", a, b), e.frame)
        assert np.array_equal(s.read("action", a, b - 1), e.action)
        assert np.array_equal(s.read("reward", a, b - 1), e.reward)
        assert s.read("action", b - 1, b)[0] == 0 and s.read("reward", b - 1, b)[0] == 0  # padding
        assert s.read("is_first", a, b).tolist() == [True] + [False] * e.length
        assert s.read("is_last", a, b).tolist() == [False] * e.length + [True]
        assert (
            s.read("terminated", b - 1, b)[0] == e.terminated
            and s.read("truncated", b - 1, b)[0] == e.truncated
        )
        assert ep["return"][i] == pytest.approx(float(e.reward.sum()))
        assert ep["length"][i] == e.length
    assert check_store(s.path) == []


def test_plain_zarr_reader_opens_every_array(pong_store):
    group = zarr.open_group(pong_store, mode="r", zarr_format=3)
    meta = dict(group.attrs)[ATTR]
    assert meta["format"] == "rise-store" and meta["env"]["id"] == "ALE/Pong-v5"
    json.dumps(meta)  # JSON all the way down
    names = [name for name, obj in group.members(max_depth=None) if isinstance(obj, zarr.Array)]
    for name in names:
        arr = group[name]
        assert arr.metadata.zarr_format == 3
        arr[: min(2, arr.shape[0])]
    assert {"obs", "frame", "action", "episodes/start"} <= set(names)
    assert group["frame"].chunks[0] * 210 * 160 * 3 >= 1_000_000  # >= ~1 MB image chunks
    assert group["obs"].chunks[0] * 84 * 84 >= 1_000_000


def test_interrupted_append_is_ignored_then_trimmed(tmp_path, spec):
    rng = np.random.default_rng(1)
    store = create_store(tmp_path / "s.zarr", spec, (84, 84), (8, 6, 3))
    store.append_episodes(_episodes(rng, 3))
    rows, meta = store.rows, dict(store.meta)
    # what a kill between the data writes and the commit leaves: longer arrays, old commit point
    store.append_episodes(_episodes(rng, 2))
    store.group.attrs[ATTR] = meta
    (Path(store.path) / "obs" / "junk.partial").write_bytes(b"x")
    problems = check_store(store.path)
    assert problems and all(p.severity == "warning" for p in problems)
    s = open_store(store.path, mode="a")
    assert s.rows == rows
    s.repair()
    assert check_store(store.path) == []
    s.append_episodes(_episodes(rng, 1))
    assert check_store(store.path) == []


def test_refuses_non_store_and_future_version(tmp_path, spec):
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(StoreError, match="not a rise store"):
        open_store(tmp_path / "plain.zarr")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "missing.zarr")
    store = create_store(tmp_path / "s.zarr", spec, (84, 84), (8, 6, 3))
    store.group.attrs[ATTR] = {**store.meta, "format_version": 99}
    with pytest.raises(StoreError, match="format version 99"):
        open_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="not empty"):
        create_store(tmp_path / "s.zarr", spec, (84, 84), None)


def test_check_reports_corruption(pong_copy):
    root = Path(pong_copy)
    # inconsistent flags
    g = zarr.open_group(pong_copy, mode="r+")
    flags = g["is_first"][:]
    flags[5] = True
    g["is_first"][:] = flags
    problems = check_store(pong_copy)
    assert any(p.severity == "error" and p.where == "is_first" for p in problems)
    # a damaged chunk file
    chunk = root / "reward" / "c.0"  # flat chunk keys (CHUNK_KEYS)
    chunk.write_bytes(b"not zstd")
    problems = check_store(pong_copy)
    assert any(
        p.severity == "error" and "chunk 0" in p.message and "cannot be read" in p.message for p in problems
    )
    # damaged root metadata
    (root / "zarr.json").write_text("{")
    problems = check_store(pong_copy)
    assert len(problems) == 1 and problems[0].severity == "error"


def _with_embeddings(store, episodes):
    """Give episodes the rows of the store's 'downsample' embeddings (the real encoder over their obs)."""
    import torch

    from rise_data.encode.encoders import make_encoder

    enc = make_encoder("downsample", source="obs")
    for ep in episodes:
        ep.embeddings = {"downsample": enc(torch.from_numpy(ep.obs)).to(torch.float16).numpy()}
    return episodes


def _store_with_embeddings(tmp_path, spec):
    from rise_data.encode import EncodeConfig, embedding_record
    from rise_data.encode.encoders import make_encoder
    from rise_data.store import StoreLayout

    path = str(tmp_path / "e.zarr")
    store = create_store(path, spec, (84, 84), (8, 6, 3))
    enc = make_encoder("downsample", source="obs")
    record = embedding_record(EncodeConfig(path, encoder="downsample", source="obs"), enc)
    store.create_embedding("downsample", enc.dim, "float16", record, StoreLayout())
    return store


def test_episodes_carry_embeddings_into_the_same_commit(tmp_path, spec):
    rng = np.random.default_rng(3)
    store = _store_with_embeddings(tmp_path, spec)
    eps = _with_embeddings(store, _episodes(rng, 4))
    store.append_episodes(eps[:3])
    store.append_episodes(eps[3:])
    s = open_store(store.path)
    assert s.embedding_meta("downsample")["rows_done"] == s.rows
    want = np.concatenate([e.embeddings["downsample"] for e in eps])
    assert np.array_equal(s.embedding("downsample")[:], want)
    assert check_store(s.path) == []
    # episodes without embeddings leave a gap: rows_done stays, later carried rows do not jump it
    store.append_episodes(_episodes(rng, 1))
    store.append_episodes(_with_embeddings(store, _episodes(rng, 1)))
    assert open_store(store.path).embedding_meta("downsample")["rows_done"] == s.rows


def test_carried_embeddings_that_do_not_fit_are_refused_before_any_write(tmp_path, spec):
    rng = np.random.default_rng(4)
    store = _store_with_embeddings(tmp_path, spec)
    store.append_episodes(_with_embeddings(store, _episodes(rng, 2)))
    rows = store.rows
    bad_name = _episodes(rng, 1)
    bad_name[0].embeddings = {"other": np.zeros((bad_name[0].length + 1, 4), np.float16)}
    bad_dim = _episodes(rng, 1)
    bad_dim[0].embeddings = {"downsample": np.zeros((bad_dim[0].length + 1, 3), np.float16)}
    mixed = _with_embeddings(store, _episodes(rng, 1)) + _episodes(rng, 1)
    for eps, match in (
        (bad_name, "no embeddings 'other'"),
        (bad_dim, "do not fit"),
        (mixed, "same embeddings"),
    ):
        with pytest.raises(StoreError, match=match):
            store.append_episodes(eps)
    s = open_store(store.path)
    assert s.rows == rows and s.array("obs").shape[0] == rows and check_store(s.path) == []


def test_repair_trims_crash_tails_and_keeps_committed_data(tmp_path, spec):
    """What a kill mid-append leaves (longer arrays, temp files, rows_done past the commit): repair makes
    every shape equal the committed rows and changes no committed value."""
    rng = np.random.default_rng(5)
    store = _store_with_embeddings(tmp_path, spec)
    store.append_episodes(_with_embeddings(store, _episodes(rng, 3)))
    rows, meta = store.rows, dict(store.meta)
    names = ["obs", "frame", "action", "reward", "is_last", "embeddings/downsample"]
    before = {n: store.group[n][:rows] for n in names}
    store.append_episodes(_with_embeddings(store, _episodes(rng, 3)))  # then "killed" before its commit:
    store.group.attrs[ATTR] = meta
    emb = store.group["embeddings/downsample"]
    emb.attrs[ATTR] = {**dict(emb.attrs)[ATTR], "rows_done": emb.shape[0]}
    for temp in ("obs/c.0.0.0.1234.partial", "zarr.json.99.partial"):
        (Path(store.path) / temp).write_bytes(b"junk")
    s = open_store(store.path, mode="a")
    assert s.group["obs"].shape[0] > rows
    out = s.repair()
    assert out["rows_dropped"] > 0 and out["episodes_dropped"] == 3 and out["temp_files_removed"] == 2
    s = open_store(store.path)
    for n in names:
        assert s.group[n].shape[0] == rows and np.array_equal(s.group[n][:], before[n]), n
    assert s.embedding_meta("downsample")["rows_done"] == rows
    assert not list(Path(store.path).rglob("*.partial")) and check_store(s.path) == []
    assert open_store(store.path, mode="a").repair() == {
        "rows_dropped": 0,
        "episodes_dropped": 0,
        "temp_files_removed": 0,
    }


def _as_format_1(path: str, name: str) -> dict:
    """Rewrite a store the way format 1 first wrote it: root version 1, the encoder record flat."""
    group = zarr.open_group(path, mode="r+")
    group.attrs[ATTR] = {**dict(group.attrs)[ATTR], "format_version": 1}
    arr = group[f"embeddings/{name}"]
    new = dict(arr.attrs)[ATTR]
    enc = new["encoder"]
    old = {
        "encoder": enc["name"],
        "name": enc["name"],
        "weights_id": enc["weights_id"],
        "preprocessing": enc["preprocessing"],
        "output_layer": enc["output_layer"],
        "dim": enc["dim"],
        "dtype": new["dtype"],
        "rise_version": "0.1.0",
        "torch_version": "2.5.0",
        "torchvision_version": "0.20.0",
        "config": new["config"],
        "rows_done": new["rows_done"],
    }
    arr.attrs[ATTR] = old
    return new


def test_format_1_store_written_the_old_way_is_read_then_upgraded_by_a_writer(cue_copy):
    """Format 2 moved the encoder record under ``encoder``; a format 1 store in the old flat layout is still
    read (record, check, training's require_embedding), and the first writer of a record upgrades it whole."""
    from rise_data.encode import EncodeConfig, encode
    from rise_data.encode.encoders import embedding_encoder
    from rise_data.store.format import FORMAT_VERSION

    encode(EncodeConfig(cue_copy, encoder="downsample", progress=False))
    new = _as_format_1(cue_copy, "downsample")
    store = open_store(cue_copy)
    assert store.meta["format_version"] == 1 and FORMAT_VERSION == 2
    assert embedding_encoder(store, "downsample").to_json() == new["encoder"]
    assert store.embedding_meta("downsample")["versions"]["torch"] == "2.5.0"
    store.require_embedding("downsample", encoder="downsample", weights_id="none")
    assert [p for p in check_store(cue_copy) if p.severity == "error"] == []
    encode(EncodeConfig(cue_copy, encoder="downsample", name="second", progress=False))
    group = zarr.open_group(cue_copy, mode="r")
    assert dict(group.attrs)[ATTR]["format_version"] == 2
    assert dict(group["embeddings/downsample"].attrs)[ATTR]["encoder"] == new["encoder"]  # rewritten in place
    assert [p for p in check_store(cue_copy) if p.severity == "error"] == []


@pytest.mark.parametrize("sep", [".", "/"])  # new stores; a store created before flat chunk keys
def test_chunk_keys_new_stores_flat_old_stores_kept(tmp_path, spec, monkeypatch, sep):
    import rise_data.store.write as write

    if sep == "/":  # the layout stores created before CHUNK_KEYS have
        monkeypatch.setattr(write, "CHUNK_KEYS", write.DefaultChunkKeyEncoding(separator="/"))
    store = _store_with_embeddings(tmp_path, spec)
    monkeypatch.undo()
    store.append_episodes(_with_embeddings(store, _episodes(np.random.default_rng(5), 4)))
    root = Path(store.path)
    for name in ("obs", "frame", "reward", "episodes/length", "embeddings/downsample"):
        assert store.array(name).metadata.chunk_key_encoding.separator == sep, name
        chunks = [p for p in (root / name).rglob("*") if p.is_file() and p.name != "zarr.json"]
        assert chunks and all(p.parent == root / name for p in chunks) == (sep == "."), name
    # an embedding made again later (encode --overwrite) keeps the store's keys: one store, one layout
    from rise_data.store import StoreLayout

    record = {k: v for k, v in store.embedding_meta("downsample").items() if k != "rows_done"}
    store.create_embedding("downsample", 256, "float16", record, StoreLayout())
    assert store.array("embeddings/downsample").metadata.chunk_key_encoding.separator == sep
    assert [p.severity for p in check_store(store.path)] == ["warning"]  # not encoded yet, nothing wrong
    if sep == ".":
        assert not (root / "frame" / "c").exists()  # no folder per chunk
