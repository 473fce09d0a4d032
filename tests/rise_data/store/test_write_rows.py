"""``write_rows``' whole-chunk path writes the same chunk files zarr would, through the array's own store."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

from rise_data.store.durable import local_backend
from rise_data.store.write import write_rows


@pytest.mark.parametrize("durability", ["safe", "fast"])
@pytest.mark.parametrize("path", ["", "frame"])  # an array at the store's root, and one in a group
def test_whole_chunks_land_where_zarr_reads_them(tmp_path, durability, path):
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 255, (70, 21, 16, 3), dtype=np.uint8)  # 4 whole chunks of 16 and a partial one
    root = tmp_path / "a.zarr"
    backend = local_backend(root, durability)
    kw = {"shape": rows.shape, "chunks": (16, 21, 16, 3), "dtype": "uint8", "compressors": ZstdCodec(level=1)}
    arr = zarr.create_array(backend, **kw) if not path else zarr.open_group(backend).create_array(path, **kw)
    write_rows(arr, 3, rows[3:])
    write_rows(arr, 0, rows[:3])
    back = zarr.open_array(root / path, mode="r")[:]
    np.testing.assert_array_equal(back, rows)
    chunk_dir = root / path / "c"
    assert sorted(int(p.name) for p in chunk_dir.iterdir()) == [0, 1, 2, 3, 4]
