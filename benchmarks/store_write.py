"""Image-row write cost: zarr-python's `arr[a:b] = rows` vs rise's direct whole-chunk writer, one run.

All write the same real Pong RGB frames into fresh arrays of the store's layout (16-row chunks, zstd 1);
every result is read back through zarr and compared bit for bit. ``direct`` and ``durable`` also commit
(one attribute write after the rows): ``direct`` with durability fast (no fsync), ``durable`` with safe
(every chunk file and folder fsynced before the commit's ``zarr.json``, which is fsynced too). Each runs
with the flat chunk keys rise creates (``c.12.0.0.0``, ``rise_data.store.write.CHUNK_KEYS``) and, as
``*_nested``, with zarr's default nested keys (``c/12/0/0/0``: three new folders per chunk), which stores
created before flat keys have. Per row: wall time, and the process's CPU time (every thread, the fsync
pool's included), which is what a writer takes from env stepping on a small machine.
The last line is one JSON object: ``direct_speedup`` (zarr / direct time), ``durable_cost`` (durable /
direct time), ``flat_keys_speedup`` and ``flat_keys_cpu`` (durable_nested / durable, wall and CPU).
Usage: python benchmarks/store_write.py [--steps 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from rise_data.collect import CollectConfig, collect
from rise_data.store import open_store
from rise_data.store.durable import local_backend
from rise_data.store.write import CHUNK_KEYS, write_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src.zarr")
        collect(CollectConfig("ALE/Pong-v5", src, steps=args.steps, num_envs=4, progress=False))
        frames = open_store(src).read("frame")
        n = len(frames) // 16 * 16
        frames = frames[:n]
        hows = ("zarr", "direct", "durable", "direct_nested", "durable_nested")
        times: dict[str, list[float]] = {k: [] for k in hows}
        cpu: dict[str, list[float]] = {k: [] for k in hows}
        for r in range(args.repeats):
            for how in hows:
                root = os.path.join(tmp, f"{how}{r}.zarr")
                backend = local_backend(root, "safe" if how.startswith("durable") else "fast")
                keys = CHUNK_KEYS if how in ("direct", "durable") else None  # None: zarr's default, nested
                arr = zarr.create_array(backend, shape=frames.shape, chunks=(16, *frames.shape[1:]), dtype="uint8",
                                        compressors=ZstdCodec(level=1), chunk_key_encoding=keys)  # fmt: skip
                t0, c0 = time.perf_counter(), time.process_time()
                if how == "zarr":
                    arr[:] = frames
                else:
                    write_rows(arr, 0, frames)
                    arr.attrs["rise"] = {"rows_done": n}  # the commit
                times[how].append(time.perf_counter() - t0)
                cpu[how].append(time.process_time() - c0)
                assert np.array_equal(zarr.open_array(root, mode="r")[:], frames)
        z, d, f, dn, fn = (min(times[k]) / n * 1e6 for k in hows)
        fc, fnc = (min(cpu[k]) / n * 1e6 for k in ("durable", "durable_nested"))
        load = os.getloadavg()[0]
        print(
            f"{os.cpu_count()} cores, load {load:.2f}; {n} real Pong RGB rows (210x160x3), best of {args.repeats}"
        )
        print(f"zarr arr[:] = rows          : {z:7.1f} us/row")
        print(
            f"rise write_rows + commit    : {d:7.1f} us/row   speed-up {z / d:.1f}x (identical bytes read back)"
        )
        print(
            f"  the same, durability safe : {f:7.1f} us/row   cost {f / d:.2f}x (fsync of chunks, folders, commit)"
        )
        print(f"nested keys, fast / safe    : {dn:7.1f} / {fn:5.1f} us/row")
        print(f"safe CPU, flat / nested keys: {fc:7.1f} / {fnc:5.1f} us/row (every thread)")
        ratios = {
            "direct_speedup": round(z / d, 3),
            "durable_cost": round(f / d, 3),
            "flat_keys_speedup": round(fn / f, 3),
            "flat_keys_cpu": round(fnc / fc, 3),
        }
        print(json.dumps({"ratios": ratios, "machine": f"cpu ({os.cpu_count()} cores), load {load:.2f}"}))


if __name__ == "__main__":
    main()
