"""rise_data.memmap_cache and StoreDataset(cache_dir=...): store arrays as .npy memmaps built once."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from conftest import encoded_copy
from torch.utils.data import DataLoader

import rise_data.memmap_cache as memmap_cache
from rise_data.memmap_cache import array_cache, array_cache_path
from rise_data.store import open_store
from rise_data.torch import StoreDataset, _ChunkReader

KEYS = ("obs", "obs_stack", "action", "embedding", "context", "context_mask")
EMB = "embeddings/downsample"


@pytest.fixture(scope="module")
def store(pong_store, tmp_path_factory) -> str:
    """The real Pong store (400+ rows: two obs chunks, the second partial) with downsample embeddings."""
    return encoded_copy(pong_store, tmp_path_factory.mktemp("mm"))


def test_cache_equals_the_store_and_is_built_once(store, tmp_path, monkeypatch):
    monkeypatch.setattr(memmap_cache, "READ_BYTES", 1)  # one chunk per read: the streaming loop runs
    s = open_store(store)
    obs, emb = array_cache(s, "obs", tmp_path), array_cache(s, EMB, tmp_path)
    assert isinstance(obs, np.memmap) and not obs.flags.writeable
    np.testing.assert_array_equal(obs, s.read("obs"))
    np.testing.assert_array_equal(emb, s.read(EMB))
    assert emb.dtype == np.float16 and emb.shape == (s.rows, 256)
    files = sorted(tmp_path.iterdir())
    assert files == sorted([array_cache_path(s, "obs", tmp_path), array_cache_path(s, EMB, tmp_path)])
    mtimes = [os.stat(f).st_mtime_ns for f in files]
    array_cache(s, "obs", tmp_path), array_cache(s, EMB, tmp_path)  # reused, and neither evicts the other
    assert [os.stat(f).st_mtime_ns for f in sorted(tmp_path.iterdir())] == mtimes


def test_dataset_reads_the_cache_as_it_reads_chunks(store, tmp_path):
    ref = StoreDataset(store, KEYS, frame_stack=4, context_len=6)
    ds = StoreDataset(store, KEYS, frame_stack=4, context_len=6, cache_dir=tmp_path)
    assert set(ds.memmap_paths) == {"obs", EMB} and len(list(tmp_path.iterdir())) == 2
    everything = np.arange(len(ds))
    want, got = ref.batch(everything), ds.batch(everything)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert len(pickle.dumps(ds)) < 64 * len(ds) + 65536  # paths travel to workers, never the rows
    loader = DataLoader(ds, batch_size=50, num_workers=2)
    rows = torch.cat([b["row"] for b in loader])
    stacks = torch.cat([b["obs_stack"] for b in loader])
    np.testing.assert_array_equal(rows.numpy(), want["row"])
    np.testing.assert_array_equal(stacks.numpy(), want["obs_stack"])
    with pytest.raises(ValueError, match="not both"):
        StoreDataset(store, KEYS, context_len=6, cache=True, cache_dir=tmp_path)


def test_chunk_reader_take_equals_row_by_row_reads(store):
    s = open_store(store)
    reader = _ChunkReader(s, "obs", budget_bytes=1)  # one chunk held: every chunk switch decodes again
    rows = np.random.default_rng(0).integers(0, s.rows, 300)  # unsorted, repeated, across both chunks
    full = s.read("obs")
    np.testing.assert_array_equal(reader.take(rows), np.stack([full[r] for r in rows]))


def test_a_list_of_indices_is_one_batch(store, tmp_path):
    from torch.utils.data import BatchSampler, RandomSampler

    ds = StoreDataset(store, KEYS, frame_stack=4, context_len=6, cache_dir=tmp_path)
    idx = [5, 0, 17, len(ds) - 1, 5]
    got = ds[idx]
    for j, i in enumerate(idx):
        for k, v in ds[i].items():
            assert torch.equal(got[k][j], v), (i, k)
    sampler = BatchSampler(RandomSampler(ds, generator=torch.Generator().manual_seed(0)), 64, False)
    rows = torch.cat([b["row"] for b in DataLoader(ds, batch_size=None, sampler=sampler)])
    assert sorted(rows.tolist()) == ds.rows.tolist()
    with pytest.raises(IndexError):
        ds[[0, len(ds)]]
