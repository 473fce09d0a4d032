"""``write_rows``' whole-chunk path writes the same chunk files zarr would, through the array's own store."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

from rise_data.store.durable import local_backend
from rise_data.store.write import _direct_chunk_codec, write_rows


@pytest.mark.parametrize("durability", ["safe", "fast"])
@pytest.mark.parametrize("path", ["", "frame"])  # an array at the store's root, and one in a group
@pytest.mark.parametrize("sep", ["/", "."])  # nested chunk keys (stores before CHUNK_KEYS) and flat ones
def test_whole_chunks_land_where_zarr_reads_them(tmp_path, durability, path, sep):
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 255, (70, 21, 16, 3), dtype=np.uint8)  # 4 whole chunks of 16 and a partial one
    root = tmp_path / "a.zarr"
    backend = local_backend(root, durability)
    kw = {"shape": rows.shape, "chunks": (16, 21, 16, 3), "dtype": "uint8", "compressors": ZstdCodec(level=1)}
    kw["chunk_key_encoding"] = {"name": "default", "configuration": {"separator": sep}}
    arr = zarr.create_array(backend, **kw) if not path else zarr.open_group(backend).create_array(path, **kw)
    write_rows(arr, 3, rows[3:])
    write_rows(arr, 0, rows[:3])
    back = zarr.open_array(root / path, mode="r")[:]
    np.testing.assert_array_equal(back, rows)
    if sep == "/":
        chunks = [int(p.name) for p in (root / path / "c").iterdir()]
    else:
        chunks = [int(p.name.split(".")[1]) for p in (root / path).iterdir() if p.name.startswith("c.")]
    assert sorted(chunks) == [0, 1, 2, 3, 4]
    assert _direct_chunk_codec(arr) is not None  # both layouts take the whole-chunk path
