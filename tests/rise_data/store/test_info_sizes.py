"""rise-data info: the bytes on disk of each array of a store folder, walked without listing every chunk."""

from __future__ import annotations

from rise_data.store import open_store
from rise_data.store.info import store_info


def test_stored_bytes_equal_zarrs_count(pong_store):
    s = open_store(pong_store)
    info = store_info(s)
    assert {"obs", "frame", "episodes/start"} <= set(info["arrays"])
    for name, a in info["arrays"].items():
        assert a["stored_bytes"] == s.array(name).nbytes_stored() > 0, name
