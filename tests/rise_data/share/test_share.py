"""Sharing stores (issue 5): cards and ids, pack, remote (S3) reads, HDF5/Minari export and import,
merge/split/filter/subset, checksums, statistics. Every round trip compares the data bit for bit."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from conftest import copy_store
from typer.testing import CliRunner

from rise_data.cli import app
from rise_data.collect import CollectConfig, collect
from rise_data.encode import EncodeConfig, encode
from rise_data.envs import env_spec, to_agent_obs
from rise_data.share.edit import SelectConfig, SplitConfig, filter_episodes, split, subset
from rise_data.store import Episode, StoreError, StoreLayout, create_store, open_store
from rise_data.store.check import check_store
from rise_data.store.checksums import compute_checksums
from rise_data.store.format import ATTR

runner = CliRunner()
# small chunks, so every streaming path crosses chunk boundaries and partial chunks
SMALL = StoreLayout(
    frame_chunk_bytes=64 * 64 * 3 * 8, scalar_chunk_rows=64, episode_chunk_rows=4, embedding_chunk_bytes=8192
)


def ok(args: list[str]):
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    return out.output


def one_line_error(args: list[str], code: int = 2) -> str:
    """The one error line of a refused command (exit code 2: usage, 1: invalid data)."""
    out = runner.invoke(app, args)
    lines = [ln for ln in out.output.strip().splitlines() if ln.startswith("error:")]
    assert out.exit_code == code and len(lines) == 1, out.output
    return lines[0]


@pytest.fixture(scope="module")
def cue(tmp_path_factory) -> str:
    """A real CueMemory store (6 episodes of 32 steps, 64x64 RGB frames) with downsample embeddings."""
    path = str(tmp_path_factory.mktemp("share") / "cue.zarr")
    collect(CollectConfig("rise/CueMemory-v0", path, episodes=6, num_envs=2, progress=False, layout=SMALL))
    encode(EncodeConfig(store=path, encoder="downsample", progress=False))
    return path


@pytest.fixture()
def cue_copy(cue, tmp_path) -> str:
    return copy_store(cue, tmp_path)


def synthetic(path, seed=0, episodes=9, embeddings=True, spec=None) -> str:
    """Episodes of varied lengths and returns (0..20 steps), with a fake 'feat' embeddings array."""
    rng = np.random.default_rng(seed)
    spec = spec or {**env_spec("rise/CueMemory-v0"), "frame_shape": [8, 6, 3]}
    store = create_store(path, spec, (84, 84), (8, 6, 3), SMALL)
    eps = []
    for i in range(episodes):
        t = int(rng.integers(0, 21))
        term = bool(rng.integers(2))
        eps.append(
            Episode(
                obs=rng.integers(0, 255, (t + 1, 84, 84), dtype=np.uint8),
                frame=rng.integers(0, 255, (t + 1, 8, 6, 3), dtype=np.uint8),
                action=rng.integers(0, 3, t),
                reward=rng.normal(size=t).astype(np.float32),
                terminated=term,
                truncated=not term,
                env_index=i % 3,
            )
        )
    store.append_episodes(eps[:4])
    store.append_episodes(eps[4:])
    if embeddings:
        pre = {"source": "obs", "resolution": None, "channels": "gray", "mean": [0.0], "std": [1.0]}
        spec = {"name": "fake:build", "weights": None, "weights_id": "none", "source": "obs", "dim": 5}
        spec.update(output_layer="x", preprocessing={**pre, "resize": "area"})
        prov = {"encoder": spec, "dtype": "float16", "versions": {"rise": "0"}, "created": "t0"}
        arr = store.create_embedding("feat", 5, "float16", prov, SMALL)
        arr[:] = rng.normal(size=(store.rows, 5)).astype(np.float16)
        arr.attrs[ATTR] = {**dict(arr.attrs)[ATTR], "rows_done": store.rows}
    store.log_write("synthetic", {"seed": seed})
    return str(path)


def episode(store, i: int) -> dict[str, np.ndarray]:
    """Every row of episode ``i`` (all step arrays and embeddings) plus its index entries."""
    ep = store.episodes()
    a, b = int(ep["start"][i]), int(ep["start"][i] + ep["length"][i] + 1)
    out = {
        name: store.read(name, a, b) for name in store.checksum_names() if not name.startswith("episodes/")
    }
    out.pop("episode_id")
    out.update({k: ep[k][i] for k in ("length", "return", "env_index")})
    return out


def same_episode(x: dict, y: dict) -> bool:
    return x.keys() == y.keys() and all(
        np.asarray(x[k]).dtype == np.asarray(y[k]).dtype and np.array_equal(x[k], y[k]) for k in x
    )


def same_store(a: str, b: str) -> None:
    """Bit for bit: every array (committed rows), its dtype, and the embeddings' provenance."""
    sa, sb = open_store(a), open_store(b)
    assert sa.checksum_names() == sb.checksum_names()
    for name in sa.checksum_names():
        x, y = sa.read(name), sb.read(name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    for name in sa.embedding_names():
        pa, pb = sa.embedding_meta(name), sb.embedding_meta(name)
        assert {k: v for k, v in pa.items() if k != "stats"} == {k: v for k, v in pb.items() if k != "stats"}
    assert sa.env == sb.env


# -- pack -----------------------------------------------------------------------------------------
def test_pack_is_one_stored_zip_read_in_place(cue_copy, tmp_path):
    # an interrupted append leaves rows past the commit point: the pack leaves them out
    s = open_store(cue_copy, mode="a")
    meta = dict(s.meta)
    s.append_episodes(
        [
            Episode(
                np.zeros((3, 84, 84), np.uint8),
                np.zeros((3, 64, 64, 3), np.uint8),
                np.zeros(2, int),
                np.zeros(2, np.float32),
                True,
                False,
            )
        ]
    )
    s.group.attrs[ATTR] = meta
    zp = str(tmp_path / "cue.zip")
    out = ok(["pack", cue_copy, zp])
    assert "sealed" in out
    with zipfile.ZipFile(zp) as z:
        infos = z.infolist()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert infos[-1].filename == "zarr.json"  # the commit point is written last
        assert not any(".partial" in i.filename for i in infos)
    packed = open_store(zp)
    assert packed.kind == "zip" and packed.group["obs"].shape[0] == packed.rows == meta["rows"]
    same_store(cue_copy, zp)
    assert check_store(zp) == []
    assert packed.meta["history"][-1]["command"] == "pack"
    # every read-only command reads it in place
    assert "192 steps in 6 episodes" in ok(["info", zp])
    assert "ok" in ok(["check", zp])
    assert "downsample" in ok(["card", zp])
    assert "read-only" in one_line_error(["card", zp, "--author", "x"])
    assert "read-only" in one_line_error(["seal", zp])
    with pytest.raises(StoreError, match="read-only"):
        open_store(zp, mode="a")
    assert "written once" in one_line_error(["pack", cue_copy, zp])
    assert ".zip" in one_line_error(["pack", cue_copy, str(tmp_path / "x.tar")])
    ok(["pack", cue_copy, zp, "--force"])


# -- HDF5 ------------------------------------------------------------------------------------------
def test_hdf5_export_import_round_trip(cue, tmp_path):
    zp = str(tmp_path / "cue.zip")
    ok(["pack", cue, zp])
    h5 = str(tmp_path / "cue.h5")
    ok(["export", zp, h5])  # from the packed file
    with h5py.File(h5) as f:
        assert f.attrs["format"] == "rise-hdf5" and f.attrs["format_version"] == 1
        assert f["obs"].shape == (198, 84, 84) and f["frame"].dtype == np.uint8
        assert f["embeddings/downsample"].dtype == np.float16
        assert json.loads(f["embeddings/downsample"].attrs["rise"])["encoder"]["name"] == "downsample"
        meta = json.loads(f.attrs["rise"])
        assert meta["env"]["id"] == "rise/CueMemory-v0" and meta["history"][-1]["command"] == "export"
    back = str(tmp_path / "back.zarr")
    assert "198 rows" in ok(["import", h5, back])
    same_store(cue, back)
    assert check_store(back) == []
    s = open_store(back)
    assert [h["command"] for h in s.meta["history"]][-3:] == ["pack", "export", "import"]
    assert s.group["frame"].chunks == open_store(cue).group["frame"].chunks  # same layout
    assert "exists" in one_line_error(["export", cue, h5])
    # a damaged export is caught by the checksums it carries
    with h5py.File(h5, "r+") as f:
        f["reward"][3] = 7.0
    assert "differ from the checksums" in one_line_error(["import", h5, str(tmp_path / "bad.zarr")], code=1)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    assert "not a rise HDF5" in one_line_error(["import", str(plain), str(tmp_path / "p.zarr")])
    assert "cannot tell the format" in one_line_error(["export", cue, str(tmp_path / "x.bin")])


# -- Minari ----------------------------------------------------------------------------------------
def test_minari_export_load_import_round_trip(cue, tmp_path, monkeypatch):
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ok(["export", cue, "minari:rise/cue-random-v0"])
    ds = minari.load_dataset("rise/cue-random-v0")
    s = open_store(cue)
    assert ds.total_episodes == 6 and ds.total_steps == 192
    e = ds[1]
    ref = episode(s, 1)
    assert np.array_equal(e.observations["obs"], ref["obs"]) and np.array_equal(
        e.observations["frame"], ref["frame"]
    )
    assert np.array_equal(e.observations["embeddings"]["downsample"], ref["embeddings/downsample"])
    assert np.array_equal(e.actions, ref["action"][:-1]) and np.array_equal(e.rewards, ref["reward"][:-1])
    assert e.terminations[-1] == ref["terminated"][-1] and not e.terminations[:-1].any()
    # compressed (Minari itself writes images raw), and the env comes back through recover_environment()
    with h5py.File(tmp_path / "minari" / "rise" / "cue-random-v0" / "data" / "main_data.hdf5") as f:
        assert f["episode_0/observations/frame"].compression == "gzip"
    env = ds.recover_environment()
    assert env.spec.id == "rise/CueMemory-v0" and env.action_space.n == s.env["n_actions"]
    assert "exists" in one_line_error(["export", cue, "minari:rise/cue-random-v0"])
    back = str(tmp_path / "back.zarr")
    ok(["import", "minari:rise/cue-random-v0", back])
    same_store(cue, back)
    assert check_store(back) == []
    # the dataset directory works as a source too
    ok(["import", str(tmp_path / "minari" / "rise" / "cue-random-v0"), str(tmp_path / "back2.zarr")])
    same_store(cue, str(tmp_path / "back2.zarr"))
    assert "no local Minari dataset" in one_line_error(["import", "minari:nope-v0", str(tmp_path / "n.zarr")])
    # the export carries checksums of what it wrote: a changed dataset does not import silently
    with h5py.File(tmp_path / "minari" / "rise" / "cue-random-v0" / "data" / "main_data.hdf5", "r+") as f:
        f["episode_2/rewards"][0] = 5.0
    assert "differ from the checksums" in one_line_error(
        ["import", "minari:rise/cue-random-v0", str(tmp_path / "x.zarr")], code=1
    )
    # Minari cannot hold 0-step episodes: refused with the way out
    syn = synthetic(tmp_path / "syn.zarr", seed=5, episodes=30)
    assert "--min-length 1" in one_line_error(["export", syn, "minari:syn-v0"])


def test_import_foreign_minari_dataset_then_encode(cue, tmp_path, monkeypatch):
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    s = open_store(cue)
    buffers = []
    for i in range(3):
        ref = episode(s, i)
        t = len(ref["action"]) - 1
        term = np.zeros(t, bool)
        term[-1] = True
        buffers.append(
            EpisodeBuffer(
                observations=ref["frame"],
                actions=ref["action"][:-1],
                rewards=ref["reward"][:-1].astype(np.float64),
                terminations=term,
                truncations=np.zeros(t, bool),
                infos={},
            )
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            "other/frames-v0",
            buffers,
            observation_space=gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
            action_space=gym.spaces.Discrete(int(s.env["n_actions"])),
            jpeg_encoding=False,
        )
    out = str(tmp_path / "imported.zarr")
    ok(["import", "minari:other/frames-v0", out])
    assert check_store(out) == []
    t = open_store(out)
    assert t.num_episodes == 3 and t.env["kind"] == "minari" and t.env["frame_shape"] == [64, 64, 3]
    for i in range(3):
        ref, got = episode(s, i), episode(t, i)
        assert np.array_equal(got["frame"], ref["frame"])
        assert np.array_equal(got["obs"], to_agent_obs(ref["frame"], 84))
        assert np.array_equal(got["action"], ref["action"]) and np.array_equal(got["reward"], ref["reward"])
    encode(EncodeConfig(store=out, encoder="downsample", progress=False))  # existing datasets can be encoded
    assert open_store(out).require_embedding("downsample", encoder="downsample").shape[0] == t.rows


# -- editing --------------------------------------------------------------------------------------
def test_split_then_merge_round_trip(cue, tmp_path):
    tr, va, m = (str(tmp_path / n) for n in ("tr.zarr", "va.zarr", "m.zarr"))
    a, b = split(SplitConfig(cue, tr, va, fraction=0.5, seed=3, batch_bytes=100_000))
    src = open_store(cue)
    taken = []
    for part in (a, b):
        assert check_store(part.path) == []
        h = part.meta["history"][-1]
        assert h["command"] == "split" and h["config"]["seed"] == 3 and "card" not in part.meta
        ids = [i for lo, hi in h["source_episodes"] for i in range(lo, hi)]
        taken += ids
        for j, i in enumerate(ids):
            assert same_episode(episode(part, j), episode(src, i))
        assert part.checksums == compute_checksums(part)  # sealed while written
    assert sorted(taken) == list(range(6)) and a.num_episodes == 3
    out = ok(["merge", tr, va, "-o", m])
    assert "6 episodes" in out
    merged = open_store(m)
    assert check_store(m) == []
    for j, i in enumerate(taken):
        assert same_episode(episode(merged, j), episode(src, i))
    hist = [h["command"] for h in merged.meta["history"]]
    assert hist.count("collect") == 1 and hist[-1] == "merge"  # shared past once, then the merge
    assert [x["path"] for x in merged.meta["history"][-1]["sources"]] == [tr, va]
    # same split again: same partition (seeded)
    ok(
        [
            "split",
            cue,
            str(tmp_path / "t2.zarr"),
            str(tmp_path / "v2.zarr"),
            "--fraction",
            "0.5",
            "--seed",
            "3",
        ]
    )
    same_store(tr, str(tmp_path / "t2.zarr"))
    assert "one side empty" in one_line_error(
        ["split", cue, str(tmp_path / "t3"), str(tmp_path / "v3"), "--fraction", "0.01"]
    )


def test_merge_refuses_other_env_or_encoders(cue, tmp_path):
    other = synthetic(tmp_path / "syn.zarr")
    assert "different env" in one_line_error(["merge", cue, other, "-o", str(tmp_path / "m.zarr")])
    a, b = synthetic(tmp_path / "a.zarr", seed=1), synthetic(tmp_path / "b.zarr", seed=2, embeddings=False)
    assert "same encoder set" in one_line_error(["merge", a, b, "-o", str(tmp_path / "m.zarr")])
    ok(["merge", a, b, "-o", str(tmp_path / "m2.zarr"), "--drop-embeddings"])
    assert open_store(str(tmp_path / "m2.zarr")).embedding_names() == []
    c = synthetic(tmp_path / "c.zarr", seed=3)
    g = zarr.open_group(c, mode="r+")
    meta = dict(g["embeddings/feat"].attrs)[ATTR]
    g["embeddings/feat"].attrs[ATTR] = {**meta, "encoder": {**meta["encoder"], "weights_id": "sha256:x"}}
    assert "weights_id" in one_line_error(["merge", a, c, "-o", str(tmp_path / "m3.zarr")])
    assert "at least two" in one_line_error(["merge", a, "-o", str(tmp_path / "m4.zarr")])


def test_filter_and_subset(tmp_path):
    src = synthetic(tmp_path / "syn.zarr", episodes=12)
    s = open_store(src)
    ep = s.episodes()
    f = filter_episodes(
        SelectConfig(src, str(tmp_path / "f.zarr"), min_length=5, max_return=1.0, batch_bytes=50_000)
    )
    want = [i for i in range(12) if ep["length"][i] >= 5 and ep["return"][i] <= 1.0]
    assert 0 < len(want) < 12 and f.num_episodes == len(want)
    assert check_store(f.path) == []
    for j, i in enumerate(want):
        assert same_episode(episode(f, j), episode(s, i))
    ok(["subset", src, str(tmp_path / "s1.zarr"), "--first", "4"])
    s1 = open_store(str(tmp_path / "s1.zarr"))
    assert s1.num_episodes == 4 and all(same_episode(episode(s1, i), episode(s, i)) for i in range(4))
    ok(["subset", src, str(tmp_path / "s2.zarr"), "--episodes", "7,0,2-3"])
    s2 = open_store(str(tmp_path / "s2.zarr"))
    assert [same_episode(episode(s2, j), episode(s, i)) for j, i in enumerate([0, 2, 3, 7])] == [True] * 4
    assert s2.meta["history"][-1]["source_episodes"] == [[0, 1], [2, 4], [7, 8]]
    assert check_store(s2.path) == []
    assert "no episode" in one_line_error(["filter", src, str(tmp_path / "e.zarr"), "--min-length", "999"])
    assert "exactly one" in one_line_error(["subset", src, str(tmp_path / "e.zarr")])
    assert "not in" in one_line_error(["subset", src, str(tmp_path / "e.zarr"), "--episodes", "99"])
    assert "at least one" in one_line_error(["filter", src, str(tmp_path / "e.zarr")])
    with pytest.raises(StoreError, match="not empty"):
        subset(SelectConfig(src, str(tmp_path / "s1.zarr"), first=1))


# -- integrity ------------------------------------------------------------------------------------
def test_seal_and_check(cue_copy):
    assert check_store(cue_copy) == []  # never sealed: nothing to verify, not a problem
    assert "not sealed" in ok(["check", cue_copy])
    assert "sealed 14 arrays" in ok(["seal", cue_copy])
    assert check_store(cue_copy) == [] and "checksums verified" in ok(["check", cue_copy])
    # a change after sealing that still decodes: --fast passes, the default check names the array
    g = zarr.open_group(cue_copy, mode="r+")
    block = g["obs"][5:6]
    g["obs"][5:6] = block ^ 1
    assert check_store(cue_copy, fast=True) == []
    errors = [p for p in check_store(cue_copy) if p.severity == "error"]
    assert [p.where for p in errors] == ["obs"] and "sha256" in errors[0].message
    out = runner.invoke(app, ["check", cue_copy])
    assert out.exit_code == 1
    g["obs"][5:6] = block
    # appending keeps the sealed prefix verifiable; re-encoding is told apart from corruption
    collect(
        CollectConfig(
            "rise/CueMemory-v0", cue_copy, episodes=2, num_envs=2, seed=1, progress=False, layout=SMALL
        )
    )
    problems = check_store(cue_copy)
    assert problems and all(p.severity == "warning" for p in problems)
    assert any("covers 198 of" in p.message for p in problems)
    encode(EncodeConfig(store=cue_copy, encoder="downsample", overwrite=True, progress=False))
    problems = check_store(cue_copy)
    assert any(p.where == "embeddings/downsample" and "re-encoded" in p.message for p in problems)
    ok(["seal", cue_copy])
    assert check_store(cue_copy) == []


def test_require_embedding(cue_copy):
    s = open_store(cue_copy)
    assert s.require_embedding("downsample").shape == (198, 256)
    assert s.require_embedding("downsample", encoder="downsample", weights_id="none").shape == (198, 256)
    for kwargs, match in [
        ({"encoder": "resnet18"}, "made by encoder 'downsample', not 'resnet18'"),
        ({"weights_id": "sha256:abc"}, "made with weights none, not sha256:abc"),
    ]:
        with pytest.raises(StoreError, match=match) as e:
            s.require_embedding("downsample", **kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(StoreError, match="no embeddings 'resnet18'"):
        s.require_embedding("resnet18")
    collect(
        CollectConfig(
            "rise/CueMemory-v0", cue_copy, episodes=2, num_envs=2, seed=1, progress=False, layout=SMALL
        )
    )
    with pytest.raises(StoreError, match="incomplete"):
        open_store(cue_copy).require_embedding("downsample")


def test_card_identity_rules(cue_copy, tmp_path):
    out = ok(
        [
            "card",
            cue_copy,
            "--id",
            "cue-random-v0",
            "--author",
            "A. Person",
            "--license",
            "CC-BY-4.0",
            "--description",
            "CueMemory, random policy.",
            "--ref-score",
            "random=-1",
            "--ref-score",
            "expert=1",
        ]
    )
    assert out.startswith("# cue-random-v0") and "A. Person" in out and "random: -1" in out
    assert "name=random, seed=0" in out and "rise 0.1.0" in out and "| license | CC-BY-4.0 |" in out
    s = open_store(cue_copy)
    card = s.meta["card"]
    assert card["content"]["rows"] == 198 and card["version"] == 0 and card["name"] == "cue-random"
    assert s.meta["history"][-1]["command"] == "card"
    assert check_store(cue_copy) == []  # setting an id seals the store
    ok(["card", cue_copy, "--author", "B"])  # same data, same id: fine
    assert "refusing to rename" in one_line_error(["card", cue_copy, "--id", "other-v0"])
    assert "needs new data" in one_line_error(["card", cue_copy, "--id", "cue-random-v1"])
    assert "not NAME-vN" in one_line_error(["card", cue_copy, "--id", "no version"])
    assert "NAME=NUMBER" in one_line_error(["card", cue_copy, "--ref-score", "x"])
    # the data changes: the id may not be re-used for it, a version bump is the way
    collect(
        CollectConfig(
            "rise/CueMemory-v0", cue_copy, episodes=2, num_envs=2, seed=1, progress=False, layout=SMALL
        )
    )
    assert any(p.where == "card" for p in check_store(cue_copy))
    assert "cue-random-v1" in one_line_error(["card", cue_copy, "--author", "C"])
    assert "Warning" in ok(["card", cue_copy])
    ok(["card", cue_copy, "--id", "cue-random-v1"])
    assert open_store(cue_copy).meta["card"]["content"]["rows"] > 198
    assert not any(p.where == "card" for p in check_store(cue_copy))
    ok(["card", cue_copy, "--id", "renamed-v0", "--force"])
    # a derived store may not take its source's id
    sub = str(tmp_path / "sub.zarr")
    ok(["subset", cue_copy, sub, "--first", "2"])
    assert "card" not in open_store(sub).meta
    assert "derived from" in one_line_error(["card", sub, "--id", "renamed-v0"])
    ok(["card", sub, "--id", "renamed-first2-v0"])
    path = tmp_path / "CARD.md"
    ok(["card", sub, "-o", str(path)])
    assert path.read_text().startswith("# renamed-first2-v0")
    assert json.loads(ok(["card", sub, "--json"]))["id"] == "renamed-first2-v0"


# -- statistics -----------------------------------------------------------------------------------
def test_stats_streaming_match_numpy(cue_copy):
    from rise_data.share.stats import QUANTILES

    out = json.loads(ok(["stats", cue_copy, "--bins", "512", "--json"]))
    s = open_store(cue_copy)
    assert s.meta["stats"]["rows"] == s.rows == out["rows"]  # recorded as well as printed
    obs, frame = s.read("obs"), s.read("frame")
    st = out["obs"]
    assert st["mean"] == pytest.approx(obs.mean()) and st["std"] == pytest.approx(obs.std())
    assert (st["min"], st["max"]) == (obs.min(), obs.max())
    assert st["quantiles"]["0.5"] == np.quantile(obs, 0.5, method="inverted_cdf")
    ch = out["frame"]["channels"]
    assert [c["mean"] for c in ch] == pytest.approx(frame.reshape(-1, 3).mean(axis=0))
    r = s.read("reward")[~s.read("is_last")]
    rs = out["reward"]
    assert (
        rs["count"] == 192 and rs["mean"] == pytest.approx(r.mean()) and rs["std"] == pytest.approx(r.std())
    )
    x = s.read("embeddings/downsample").astype(np.float64)
    es = out["embeddings"]["downsample"]
    assert np.allclose(es["mean"], x.mean(axis=0)) and np.allclose(es["std"], x.std(axis=0))
    assert np.array_equal(es["min"], x.min(axis=0)) and np.array_equal(es["max"], x.max(axis=0))
    width = (x.max(axis=0) - x.min(axis=0)) / 512
    for q in QUANTILES:
        exact = np.quantile(x, q, axis=0, method="inverted_cdf")
        assert np.all(np.abs(np.asarray(es["quantiles"][str(q)]) - exact) <= width + 1e-9)
    assert json.loads(ok(["stats", cue_copy, "--json", "--no-write"]))["rows"] == 198
    assert not any(p.where == "stats" for p in check_store(cue_copy))
    collect(
        CollectConfig(
            "rise/CueMemory-v0", cue_copy, episodes=2, num_envs=2, seed=1, progress=False, layout=SMALL
        )
    )
    assert any(p.where == "stats" for p in check_store(cue_copy))  # recorded statistics are now stale


# -- remote: a real S3 API on loopback (moto's server) ----------------------------------------------


def test_read_only_commands_on_s3(cue, tmp_path, s3):
    root = Path(cue)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            s3.upload_file(str(p), "rise-data", f"cue.zarr/{p.relative_to(root).as_posix()}")
    zp = tmp_path / "cue.zip"
    ok(["pack", cue, str(zp)])
    s3.upload_file(str(zp), "rise-data", "packed/cue.zip")
    for url in ("s3://rise-data/cue.zarr", "s3://rise-data/packed/cue.zip"):
        store = open_store(url)
        assert store.kind == "url" and store.rows == 198 and store.embedding_names() == ["downsample"]
        assert "192 steps in 6 episodes" in ok(["info", url])
        assert "ok" in ok(["check", url])  # decodes every chunk: the zip reads through as the folder does
        if url.endswith(".zip"):
            continue  # the commands below read through the same opened store: once is enough
        assert "downsample" in ok(["card", url])
        assert json.loads(ok(["stats", url, "--json"]))["rows"] == 198
        h5 = str(tmp_path / f"{url.rsplit('/', 1)[1]}.h5")
        ok(["export", url, h5])
        back = str(tmp_path / f"{url.rsplit('/', 1)[1]}.back.zarr")
        ok(["import", h5, back])
        same_store(cue, back)
        sub = str(tmp_path / f"{url.rsplit('/', 1)[1]}.sub.zarr")
        ok(["subset", url, sub, "--first", "2"])
        assert check_store(sub) == []
    assert "read-only" in one_line_error(["seal", "s3://rise-data/cue.zarr"])
    assert "no store at this path" in one_line_error(["info", "s3://rise-data/missing.zarr"])
    # a missing bucket is named as such (not zarr's "No group found in store")
    msg = one_line_error(["info", "s3://no-such-bucket/cue.zarr"])
    assert "bucket 'no-such-bucket' does not exist" in msg and "No group found" not in msg


@pytest.mark.parametrize(
    "cmd", ["card", "seal", "stats", "pack", "export", "import", "merge", "split", "filter", "subset"]
)
def test_help(cmd):
    assert "Usage" in ok([cmd, "--help"])


ARROW_IMPORT = """
import sys
sys.modules["pyarrow"] = None  # as if pyarrow were not installed, whether it is or not
from rise_data.cli import app
sys.argv = ["rise-data", "import", *sys.argv[1:], "--quiet"]
app()
"""


def test_minari_arrow_import_without_pyarrow_is_one_line_exit_2(tmp_path):
    """An Arrow-format Minari dataset, named by directory or by minari:ID, without pyarrow: one line naming
    the install command, exit 2 (it was a traceback and exit 3, "a bug in rise")."""
    import subprocess
    import sys

    import gymnasium as gym
    from minari.serialization import serialize_space

    data = tmp_path / "datasets" / "test" / "arrow-v0" / "data"
    data.mkdir(parents=True)
    meta = {
        "data_format": "arrow",
        "dataset_id": "test/arrow-v0",
        "total_episodes": 1,
        "total_steps": 1,
        "minari_version": "0.5.4",
        "observation_space": serialize_space(gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)),
        "action_space": serialize_space(gym.spaces.Discrete(3)),
    }
    (data / "metadata.json").write_text(json.dumps(meta))
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "datasets")}
    for source in (str(data.parent), "minari:test/arrow-v0"):
        out = subprocess.run(
            [sys.executable, "-c", ARROW_IMPORT, source, str(tmp_path / "s.zarr")],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "pyarrow" in lines[0] and "pip install 'minari[arrow]'" in lines[0], lines
        assert not (tmp_path / "s.zarr").exists()


def test_url_without_its_fsspec_backend_is_one_line_exit_2():
    import subprocess
    import sys

    code = "import sys; sys.modules['s3fs'] = None; from rise_data.cli import app; app()"
    out = subprocess.run(
        [sys.executable, "-c", code, "info", "s3://bucket/pong.zarr"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: s3://bucket/pong.zarr: reading s3:// URLs needs s3fs, which is not installed; install it with: "
        "pip install s3fs"
    ], out.stderr


def test_pack_drops_chunks_wholly_past_the_commit_in_both_key_layouts():
    from rise_data.share.pack import _keep_chunk

    keep = {"obs": 2, "episodes/length": 1, "frame": None}  # rows chunks to keep (None: all)
    assert _keep_chunk("obs/c.1.0.0", keep) and not _keep_chunk("obs/c.2.0.0", keep)
    assert _keep_chunk("obs/c/1/0/0", keep) and not _keep_chunk("obs/c/2/0/0", keep)
    assert _keep_chunk("episodes/length/c/0", keep) and not _keep_chunk("episodes/length/c.1", keep)
    assert _keep_chunk("frame/c.99.0.0.0", keep) and _keep_chunk("embeddings/zarr.json", keep)
