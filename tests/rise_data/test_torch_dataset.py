"""rise_data.torch.StoreDataset: items equal a naive loop over the store's arrays, in every way it is read."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from conftest import encoded_copy
from torch.utils.data import DataLoader

from rise_data.share.pack import PackConfig, pack
from rise_data.store import open_store
from rise_data.torch import StoreDataset

S, K, N, GAMMA = 4, 6, 3, 0.9
KEYS = ("obs", "frame", "obs_stack", "obs_stack_mask", "action", "reward", "terminated", "truncated")
KEYS += ("is_first", "is_last", "embedding", "context", "context_mask")


@pytest.fixture(scope="module")
def store(cue_store, tmp_path_factory) -> str:
    """The real CueMemory store (3 episodes of 33 rows, RGB frames) encoded with the downsample encoder."""
    return encoded_copy(cue_store, tmp_path_factory.mktemp("ds"))


def arrays(path: str) -> dict:
    s = open_store(path)
    names = ["obs", "frame", "action", "reward", "terminated", "truncated", "is_first", "is_last"]
    out = {k: s.read(k) for k in names}
    out["emb"] = s.read("embeddings/downsample")
    return out


def naive(a: dict, r: int) -> dict:
    """One transition by plain loops: walk back to the episode start, forward to its last row."""
    start = r
    while not a["is_first"][start]:
        start -= 1
    zero_emb = np.zeros_like(a["emb"][0])
    stack = [a["obs"][max(q, start)] for q in range(r - S + 1, r + 1)]  # BTR: the first frame repeated
    ctx = [a["emb"][q] if q >= start else zero_emb for q in range(r - K + 1, r + 1)]
    ret, m = 0.0, 0
    for k in range(N):
        if a["is_last"][r + k]:
            break
        ret += GAMMA**k * float(a["reward"][r + k])
        m = k + 1
    out = {
        "row": r,
        "obs": a["obs"][r],
        "frame": a["frame"][r],
        "obs_stack": np.stack(stack),
        "obs_stack_mask": np.array([q >= start for q in range(r - S + 1, r + 1)]),
        "embedding": a["emb"][r],
        "context": np.stack(ctx),
        "context_mask": np.array([q >= start for q in range(r - K + 1, r + 1)]),
        "return": ret,
        "discount": 0.0 if a["terminated"][r + m] else GAMMA**m,
        "next_row": r + m,
    }
    for k in ("action", "reward", "terminated", "truncated", "is_first", "is_last"):
        out[k] = a[k][r]
    return out


def same(item: dict, want: dict) -> None:
    for k, v in want.items():
        got = item[k].numpy() if isinstance(item[k], torch.Tensor) else item[k]
        if k in ("return", "discount"):
            np.testing.assert_allclose(got, v, rtol=1e-5, err_msg=k)
        else:
            np.testing.assert_array_equal(got, v, err_msg=k)


def dataset(path: str, **kw) -> StoreDataset:
    return StoreDataset(path, KEYS, frame_stack=S, context_len=K, n_step=N, gamma=GAMMA, **kw)


def test_items_equal_a_naive_loop_across_episode_boundaries(store):
    a = arrays(store)
    ds = dataset(store)
    rows = [
        r for r in range(len(a["is_last"])) if not a["is_last"][r]
    ]  # transitions: every row but last rows
    assert len(ds) == len(rows) and a["is_first"].sum() == 3
    for i, r in enumerate(rows):
        item = ds[i]
        same(item, naive(a, r))
        if a["is_first"][r]:  # an episode start: earlier slots repeat its first frame / are zero, all masked
            assert not item["obs_stack_mask"][:-1].any() and not item["context_mask"][:-1].any()
            assert (item["obs_stack"] == item["obs_stack"][-1]).all() and not item["context"][:-1].any()
    nxt = ds[rows.index(int(np.flatnonzero(a["is_last"])[0]) - 1)]  # one step before a terminal row
    assert nxt["discount"] == 0 and a["terminated"][int(nxt["next_row"])]
    np.testing.assert_array_equal(nxt["next_obs"].numpy(), a["obs"][int(nxt["next_row"])])
    np.testing.assert_array_equal(nxt["next_obs_stack"].numpy(), naive(a, int(nxt["next_row"]))["obs_stack"])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_workers_open_their_own_store_and_batches_match(store):
    ds = dataset(store)
    blob = pickle.dumps(ds)
    assert b"zarr.core" not in blob and b"zarr.storage" not in blob  # no zarr handle travels to workers
    ds[0]  # the parent's handle and chunk cache exist now; a pickled copy still drops them
    assert pickle.loads(pickle.dumps(ds))._store is None
    want = [ds[i] for i in range(len(ds))]
    loader = DataLoader(ds, batch_size=7, shuffle=False, num_workers=2)
    got = list(loader)
    assert sum(len(b["row"]) for b in got) == len(ds)
    for j, b in enumerate(got):
        for i in range(len(b["row"])):
            for k in want[0]:
                assert torch.equal(b[k][i], want[j * 7 + i][k]), (k, j * 7 + i)


def test_ram_cache_and_packed_zip_read_the_same(store, tmp_path):
    ref = dataset(store)
    zipped = str(tmp_path / "cue.zip")
    pack(PackConfig(store=store, output=zipped, progress=False))
    for ds in (dataset(store, cache=True), dataset(zipped), dataset(store, chunk_cache_mb=0)):
        assert ds.ram or not ds.path.endswith(".zarr") or ds.chunk_budget == 0
        for i in (0, 1, 31, 32, 33, len(ds) - 1):
            for k, v in ref[i].items():
                assert torch.equal(ds[i][k], v), (ds.path, i, k)


@pytest.mark.slow
def test_reads_s3(store, s3):
    from pathlib import Path

    root = Path(store)
    # a prefix of its own: moto's in-process buckets outlive each server, and a chunk zarr never wrote
    # (all fill value) would otherwise be read from another test's store under the same key
    for p in root.rglob("*"):
        if p.is_file():
            s3.upload_file(str(p), "rise-data", f"dataset/cue.zarr/{p.relative_to(root).as_posix()}")
    ds, ref = dataset("s3://rise-data/dataset/cue.zarr"), dataset(store)
    assert len(ds) == len(ref)
    for i in (0, 40, len(ds) - 1):
        for k, v in ref[i].items():
            assert torch.equal(ds[i][k], v), (i, k)


def test_bad_keys_and_missing_embeddings(cue_store, store):
    with pytest.raises(ValueError, match="unknown dataset keys"):
        StoreDataset(store, ("pixels",))
    with pytest.raises(ValueError, match="context_len"):
        StoreDataset(store, ("context",))
    with pytest.raises(ValueError, match="pass embedding=NAME"):
        StoreDataset(cue_store, ("embedding",))  # the plain fixture has no embeddings
    one = StoreDataset(store, ("action",))  # no windows asked: no embedding needed
    assert set(one[0]) == {"row", "action"}


def test_the_docs_bc_example_runs(store):
    """docs/viewer.md's behaviour-cloning block, run as written on a real store (one epoch)."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "viewer.md").read_text()
    block = text.split("### Behaviour cloning", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    env: dict = {}
    exec(block.replace('"pong.zarr"', repr(store)), env)  # noqa: S102  (our own docs)
    assert torch.isfinite(env["loss"]) and env["n_actions"] == 3


def test_items_equal_the_replays_batches(store, tmp_path):
    """The windows are the replay's own: a store-only Replay batch equals the dataset's items at its rows."""
    from rise_agent.replay import Replay, ReplayConfig

    cfg = ReplayConfig(n_step=N, gamma=GAMMA, prioritized=False, reward_clip=None)
    from rise_agent.network import NetworkConfig

    net = NetworkConfig(n_actions=1, frame_stack=S, context_len=K)
    replay = Replay.from_store(store, "downsample", cfg, cache_dir=tmp_path, network=net)
    batch = replay.sample(32, np.random.default_rng(0))
    ds = dataset(store)
    items = ds.__getitems__(np.searchsorted(ds.rows, batch.index).tolist())
    assert [int(it["row"]) for it in items] == batch.index.tolist()
    assert (
        ~batch.mask
    ).any() and batch.mask.any()  # the batch holds rows near an episode start, and not only
    pairs = {"obs_stack": "frames", "context": "context", "context_mask": "mask", "action": "action"}
    pairs |= {"return": "returns", "discount": "discount", "next_obs_stack": "next_frames"}
    pairs |= {"next_context": "next_context", "next_context_mask": "next_mask"}
    for key, field in pairs.items():
        got = torch.stack([it[key] for it in items])
        want = getattr(batch, field).cpu()
        assert (
            torch.allclose(got.to(want.dtype), want) if want.is_floating_point() else torch.equal(got, want)
        ), key
