"""HDF5 export and import: the store's arrays, one HDF5 dataset each, with the metadata as JSON.

Layout (docs/sharing.md#hdf5): root attributes ``format = "rise-hdf5"``, ``format_version = 1`` and
``rise`` (the store's root attribute as a JSON string: env, card, history, layout, checksums, stats);
datasets ``obs``, ``frame``, ``action``, ``reward``, ``terminated``, ``truncated``, ``is_first``,
``is_last``, ``episode_id``, ``episodes/{start,length,return,env_index}`` and ``embeddings/<name>``
(attribute ``rise``: the provenance as JSON), with the store's dtypes and shapes cut to the committed
rows. Both directions stream whole chunks / whole episodes; an import rebuilds the store with
``Store.append_episodes`` and checks its checksums against those the export recorded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rise_data import __version__
from rise_data.options import param
from rise_data.share.edit import BATCH_BYTES, StoreBuilder, episode_batches, read_episodes, row_bytes
from rise_data.store import CorruptStoreError, Store, StoreError, open_store
from rise_data.store.checksums import RowHasher, block_rows
from rise_data.store.durable import publish
from rise_data.store.format import EPISODE_ARRAYS, config_to_json, now_iso

H5_FORMAT = "rise-hdf5"
H5_FORMAT_VERSION = 1
COMPRESSION = {"gzip": ("gzip", 1), "lzf": ("lzf", None), "none": (None, None)}


@dataclass(frozen=True)
class ExportConfig:
    store: str = param(help="Store directory, packed .zip or URL.")
    output: str = param(help="OUT.h5 (HDF5), or minari:DATASET_ID (a Minari dataset).")
    format: str = param("auto", "auto (from OUTPUT), hdf5 or minari.")
    compression: str = param(
        "gzip", "HDF5: gzip (level 1, readable everywhere), lzf (h5py only, faster) or none."
    )
    dataset_id: str | None = param(None, "minari")
    force: bool = param(False, "Replace an existing output.")
    progress: bool = param(False, "Show a progress bar.")


def export_hdf5(config: ExportConfig) -> dict:
    """Write the committed rows of a store (any readable one: directory, .zip, URL) to one HDF5 file."""
    import h5py

    if config.compression not in COMPRESSION:
        raise StoreError(f"--compression must be one of {', '.join(COMPRESSION)}")
    out = Path(config.output)
    if out.exists() and not config.force:
        raise StoreError(f"{out} exists; pass --force to replace it")
    store = open_store(config.store)
    t0 = time.perf_counter()
    names = store.checksum_names()
    skipped = []
    for name in store.embedding_names():
        if int(store.embedding_meta(name).get("rows_done", 0)) < store.rows:
            names.remove(f"embeddings/{name}")
            skipped.append(name)
    hasher = RowHasher()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    bar = tqdm(
        total=sum(store.checksum_rows(n) * row_bytes(store, [n]) for n in names),
        unit="B",
        unit_scale=True,
        desc="export",
        disable=not config.progress,
    )
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = H5_FORMAT
        f.attrs["format_version"] = H5_FORMAT_VERSION
        for name in names:
            _write_dataset(f, store, name, COMPRESSION[config.compression], hasher, bar)
        meta = dict(store.meta)
        meta["checksums"] = {"algorithm": "sha256", "time": now_iso(), "arrays": hasher.digests()}
        entry = {
            "command": "export",
            "time": now_iso(),
            "rise_version": __version__,
            "config": config_to_json(config),
            "format": "hdf5",
        }
        meta["history"] = [*meta.get("history", []), entry]
        f.attrs["rise"] = json.dumps(meta)
    bar.close()
    publish(tmp, out)
    return {
        "output": str(out),
        "bytes": out.stat().st_size,
        "rows": store.rows,
        "episodes": store.num_episodes,
        "skipped_embeddings": skipped,
        "seconds": time.perf_counter() - t0,
    }


@dataclass(frozen=True)
class ImportConfig:
    """What ``rise-data import`` reads and writes, whatever the format (a foreign Minari dataset's mapping:
    ``rise_data.share.minari_io.MinariImportConfig``)."""

    source: str = param(help="A rise HDF5 export (.h5), minari:DATASET_ID, or a Minari dataset directory.")
    store: str = param(help="New store directory to create.")
    format: str = param("auto", "auto (from SOURCE), hdf5 or minari.")
    batch_bytes: int = param(BATCH_BYTES, "Bytes of rows read and written per block (bounds memory).")
    progress: bool = param(False, "Show a progress bar.")


def _write_dataset(f, store: Store, name: str, compression: tuple, hasher: RowHasher, bar) -> None:
    """One array's committed rows (embeddings: the encoded prefix) as an HDF5 dataset, streamed and hashed."""
    comp, level = compression
    arr = store.array(name)
    bound = store.checksum_rows(name)
    shape = (bound, *arr.shape[1:])
    kw = {}
    if bound:
        kw = {"chunks": (min(arr.chunks[0], bound), *arr.shape[1:])}
        if comp:
            kw.update(compression=comp, compression_opts=level)
    d = f.create_dataset(name, shape=shape, dtype=arr.dtype, **kw)
    hasher.update(name, arr[0:0], tag=store.checksum_tag(name))
    step = block_rows(arr)
    for s in range(0, bound, step):
        block = arr[s : min(s + step, bound)]
        d[s : s + len(block)] = block
        hasher.update(name, block)
        bar.update(block.nbytes)
    if name.startswith("embeddings/"):
        prov = {**store.embedding_meta(name.split("/", 1)[1]), "rows_done": bound}
        d.attrs["rise"] = json.dumps(prov)


def import_hdf5(config: ImportConfig) -> dict:
    """Rebuild a store from a ``rise-data export`` HDF5 file (bit for bit, checksums verified)."""
    from rise_data.store.lock import store_lock

    with store_lock(config.store, "import"):
        return _import_hdf5(config)


def _import_hdf5(config: ImportConfig) -> dict:
    import h5py

    t0 = time.perf_counter()
    try:
        f = h5py.File(config.source, "r")
    except OSError as e:
        raise StoreError(f"{config.source} is not a readable HDF5 file ({e})") from None
    with f:
        if f.attrs.get("format") != H5_FORMAT:
            raise StoreError(
                f"{config.source} is not a rise HDF5 export (no format='{H5_FORMAT}' attribute); "
                "Minari datasets import with: rise-data import minari:DATASET_ID STORE"
            )
        if int(f.attrs.get("format_version", 0)) != H5_FORMAT_VERSION:
            raise StoreError(
                f"{config.source} has rise-hdf5 version {f.attrs.get('format_version')}; upgrade rise"
            )
        meta = json.loads(f.attrs["rise"])
        embeddings = {}
        if "embeddings" in f:
            for name in f["embeddings"]:
                embeddings[name] = json.loads(f[f"embeddings/{name}"].attrs["rise"])
        frame_shape = tuple(f["frame"].shape[1:]) if "frame" in f else None
        builder = StoreBuilder.from_export(config.store, meta, frame_shape, embeddings)
        ep = {k: f[f"episodes/{k}"][:] for k in EPISODE_ARRAYS}
        names = list(embeddings)
        per_row = row_bytes(
            f,
            [n for n in ("obs", "frame", "action", "reward") if n in f] + [f"embeddings/{n}" for n in names],
        )

        def read(name: str, start: int, stop: int) -> np.ndarray:
            return f[name][start:stop]

        bar = tqdm(total=len(ep["length"]), unit="episode", desc="import", disable=not config.progress)
        for batch in episode_batches(ep["length"], range(len(ep["length"])), per_row, config.batch_bytes):
            episodes, emb = read_episodes(
                read, ep["start"], ep["length"], ep["env_index"], batch, frame_shape is not None, names
            )
            builder.add(episodes, emb)
            bar.update(len(batch))
        bar.close()
    store = builder.finish("import", config_to_json(config), format="hdf5")
    mismatched = _compare_checksums(meta.get("checksums", {}).get("arrays", {}), store.checksums)
    if mismatched:
        raise CorruptStoreError(
            f"{config.source}: imported {', '.join(mismatched)} differ from the checksums the export recorded "
            "(the file is damaged); re-export or re-download it"
        )
    return {
        "store": store.path,
        "rows": store.rows,
        "episodes": store.num_episodes,
        "seconds": time.perf_counter() - t0,
    }


def _compare_checksums(expected: dict, got: dict) -> list[str]:
    return [
        name
        for name, e in expected.items()
        if name in got
        and got[name]["rows"] == e.get("rows")
        and got[name].get("created") == e.get("created")
        and got[name]["sha256"] != e.get("sha256")
    ]
