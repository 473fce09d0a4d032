"""One storage contract, run over every backend a store lives on (zarr's ``StoreTests`` style).

:class:`StoreContract` states what every reader may rely on, whatever holds the store: the committed
rows and episodes, every array bit for bit, embeddings and their record, recorded checksums, bounds at the
commit point, one-line errors. Each backend subclass only says how to put the reference store there
(``location``) and whether it can be written; the reference is a real encoded, sealed CueMemory store.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from conftest import encoded_copy

from rise_data.share.pack import PackConfig, pack
from rise_data.store import CorruptStoreError, Store, StoreError, WritableStore, open_store
from rise_data.store.check import check_store
from rise_data.store.checksums import compute_checksums
from rise_data.store.format import ATTR, EPISODE_ARRAYS


@pytest.fixture(scope="module")
def reference(cue_store, tmp_path_factory) -> str:
    """The cue store with downsample embeddings, sealed (a folder; read-only: the backends copy it)."""
    path = encoded_copy(cue_store, tmp_path_factory.mktemp("contract"))
    open_store(path, mode="a").seal()
    return path


class StoreContract:
    """What every backend must do. Subclasses give ``location`` (a fixture) and ``kind``/``writable``."""

    kind: str
    writable: bool

    @pytest.fixture()
    def location(self, reference, tmp_path) -> str:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def test_opens_with_the_committed_counts_and_env(self, location, reference):
        ref, store = open_store(reference), open_store(location)
        assert isinstance(store, Store) and store.kind == self.kind
        assert (store.rows, store.num_episodes, store.env) == (ref.rows, ref.num_episodes, ref.env)
        assert store.meta["format_version"] == ref.meta["format_version"] and store.has_frames

    def test_every_array_reads_bit_for_bit(self, location, reference):
        ref, store = open_store(reference), open_store(location)
        assert store.checksum_names() == ref.checksum_names()
        for name in ref.checksum_names():
            a, b = ref.read(name), store.read(name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name

    def test_reads_stop_at_the_commit_point(self, location):
        store = open_store(location)
        assert len(store.read("action", 0, store.rows + 1000)) == store.rows
        assert len(store.read("episodes/start", 0, store.num_episodes + 5)) == store.num_episodes
        tail = store.read("obs", store.rows - 3)
        assert tail.shape[0] == 3 and tail.dtype == np.uint8

    def test_episode_index_tiles_the_rows(self, location):
        ep = open_store(location).episodes()
        assert set(ep) == set(EPISODE_ARRAYS)
        assert ep["start"][0] == 0 and np.array_equal(
            ep["start"][1:], ep["start"][:-1] + ep["length"][:-1] + 1
        )

    def test_embeddings_and_their_record(self, location, reference):
        store = open_store(location)
        assert store.embedding_names() == ["downsample"]
        arr = store.require_embedding("downsample", encoder="downsample", weights_id="none")
        assert arr.shape == (store.rows, 256)
        assert store.embedding_meta("downsample") == open_store(reference).embedding_meta("downsample")
        with pytest.raises(StoreError, match="no embeddings 'resnet18'"):
            store.embedding("resnet18")
        with pytest.raises(StoreError, match="made by encoder 'downsample', not 'resnet18'"):
            store.require_embedding("downsample", encoder="resnet18")

    def test_recorded_checksums_verify(self, location):
        store = open_store(location)
        assert store.checksums and compute_checksums(store) == store.checksums

    def test_check_finds_no_problem(self, location):
        assert [p for p in check_store(location) if p.severity == "error"] == []

    def test_a_missing_array_is_a_one_line_store_error(self, location):
        with pytest.raises(StoreError, match="has no array 'nope'") as e:
            open_store(location).array("nope")
        assert "\n" not in str(e.value) and not isinstance(e.value, CorruptStoreError)

    def test_writing_is_allowed_only_where_the_backend_can(self, location):
        if not self.writable:
            with pytest.raises(StoreError, match="read-only"):
                open_store(location, mode="a")
            return
        store = open_store(location, mode="a")
        assert isinstance(store, WritableStore)
        store.log_write("contract", {"note": "written"})
        assert open_store(location).meta["history"][-1]["command"] == "contract"

    def test_a_plain_zarr_reader_sees_the_same_group(self, location):
        store = open_store(location)
        assert dict(store.group.attrs)[ATTR]["rows"] == store.rows
        assert isinstance(store.group["obs"], zarr.Array)


class TestFolder(StoreContract):
    kind, writable = "directory", True

    @pytest.fixture()
    def location(self, reference, tmp_path) -> str:
        import shutil

        path = str(tmp_path / "cue.zarr")
        shutil.copytree(reference, path)
        return path


class TestZip(StoreContract):
    kind, writable = "zip", False

    @pytest.fixture()
    def location(self, reference, tmp_path) -> str:
        path = str(tmp_path / "cue.zip")
        pack(PackConfig(store=reference, output=path))
        return path


class TestS3(StoreContract):
    """Through moto's S3 server on loopback (tests/conftest.py ``s3``): the folder uploaded as objects."""

    kind, writable = "url", False

    @pytest.fixture()
    def location(self, reference, s3) -> str:
        from pathlib import Path

        root = Path(reference)
        for p in sorted(root.rglob("*")):
            if p.is_file():
                s3.upload_file(str(p), "rise-data", f"contract/cue.zarr/{p.relative_to(root).as_posix()}")
        return "s3://rise-data/contract/cue.zarr"  # its own prefix: moto keeps buckets per process
