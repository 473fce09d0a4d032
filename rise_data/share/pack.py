"""``rise-data pack``: a store directory as one ``.zip`` file, written once, readable in place.

The zip holds the store's files under the same keys with **stored** (uncompressed) entries: chunks are
zstd already, and an uncompressed member can be read at an offset, so zarr's ``ZipStore`` (or fsspec's
``zip::s3://...``) reads chunks straight from the file. Zarr's ZipStore cannot be appended to safely,
so a packed store is read-only; to change it, import/copy it to a directory.

Packing keeps only the store's own keys: the root and group ``zarr.json``, each array's ``zarr.json``
and its chunk files. Nothing else goes in: not rise's local state (``.rise/``: writer locks), not
``*.partial`` temp files, not files a user left in the folder, and never a symbolic link's target (a
store holding a link is refused: a link can point anywhere, e.g. ``/etc``). Packing keeps only
committed data (arrays are cut to the commit point and chunks wholly past it are left out), seals the packed copy (per-array sha256 computed from the
source while packing; a source whose recorded checksums disagree is refused as corrupt) and writes the
root ``zarr.json`` last. The file is written to ``OUT.partial`` and renamed, so ``OUT`` is complete or
absent.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from rise_data import __version__
from rise_data.options import ConfigError, param
from rise_data.store import Store, StoreError, open_store
from rise_data.store.checksums import compute_checksums
from rise_data.store.durable import publish
from rise_data.store.format import ATTR, EPISODE_ARRAYS, LOCK_DIR, now_iso

LOCAL_STATE = LOCK_DIR  # rise's per-folder state (writer locks): never packed


@dataclass(frozen=True)
class PackConfig:
    store: str = param(help="Store directory.")
    output: str = param(help="The .zip file to write (once; stored entries).")
    force: bool = param(False, "Replace an existing output file.")
    progress: bool = param(False, "Show a progress bar.")


def verify_against_recorded(store: Store, digests: dict) -> None:
    """Raise if checksums recorded in ``store`` disagree with freshly computed ones over the same rows."""
    for name, rec in store.checksums.items():
        new = digests.get(name)
        if new is None or rec.get("rows") != new["rows"] or rec.get("created") != new.get("created"):
            continue  # covers other rows (appended since) or another encode: not comparable
        if rec["sha256"] != new["sha256"]:
            raise StoreError(
                f"{store.path}: '{name}' no longer matches its recorded sha256 (corrupt or edited by hand); "
                f"run: rise-data check {store.path}"
            )


def _array_bounds(store: Store) -> dict[str, int]:
    """Committed length along axis 0 of every array (what the packed copy's shapes are cut to)."""
    bounds = {name: store.rows for name, _ in store.step_arrays()}
    bounds.update({f"episodes/{k}": store.num_episodes for k in EPISODE_ARRAYS})
    bounds.update({f"embeddings/{n}": store.rows for n in store.embedding_names()})
    return bounds


def _cut_metadata(meta: dict, bound: int) -> tuple[dict, int | None]:
    """An array's zarr.json cut to ``bound`` rows, and the number of row chunks to keep (None: keep all)."""
    shape = meta.get("shape")
    chunks = ((meta.get("chunk_grid") or {}).get("configuration") or {}).get("chunk_shape")
    enc = meta.get("chunk_key_encoding") or {}
    sep = (enc.get("configuration") or {}).get("separator", "/")
    if not shape or not chunks or enc.get("name") != "default" or sep not in ("/", ".") or shape[0] < bound:
        return meta, None
    return {**meta, "shape": [bound, *shape[1:]]}, -(-bound // chunks[0])


def pack(config: PackConfig) -> dict:
    """Write the store directory ``config.store`` as one zip at ``config.output``; returns a summary."""
    from rise_data.store.check import check_store

    src, out = Path(config.store), Path(config.output)
    if not out.name.lower().endswith(".zip"):
        raise ConfigError(f"the packed file must end in .zip (got {out}), so readers know to open it as one")
    store = open_store(config.store)
    if store.kind != "directory":
        raise StoreError(
            f"{config.store} is not a store directory; pack reads a directory (it is {store.kind})"
        )
    if out.exists() and not config.force:
        raise StoreError(f"{out} exists; a packed store is written once (pass --force to replace it)")
    bounds = _array_bounds(store)
    arrays = {name: _cut_metadata(_read_json(src / name / "zarr.json"), b) for name, b in bounds.items()}
    own, left_out = store_files(src, bounds, {name: k for name, (_, k) in arrays.items()})  # refuses links
    errors = [p for p in check_store(config.store, fast=True) if p.severity == "error"]
    if errors:
        raise StoreError(f"{config.store} is not valid ({errors[0]}); fix it before packing")
    t0 = time.perf_counter()
    digests = compute_checksums(store)
    verify_against_recorded(store, digests)
    root = _read_json(src / "zarr.json")
    root.setdefault("attributes", {})[ATTR] = _packed_meta(store, config, digests)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
            for name, (arr_meta, _) in arrays.items():
                z.writestr(f"{name}/zarr.json", json.dumps(arr_meta, indent=2))
            sizes = [path.stat().st_size for _, path in own]
            with tqdm(
                total=sum(sizes), unit="B", unit_scale=True, desc="pack", disable=not config.progress
            ) as bar:
                for (rel, path), size in zip(own, sizes, strict=True):
                    z.write(path, rel)
                    bar.update(size)
            z.writestr("zarr.json", json.dumps(root, indent=2))  # the root (commit point, checksums) last
        publish(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "output": str(out),
        "bytes": out.stat().st_size,
        "files": len(arrays) + len(own) + 1,
        "rows": store.rows,
        "episodes": store.num_episodes,
        "left_out": left_out,
        "seconds": time.perf_counter() - t0,
    }


def _read_json(path: Path) -> dict:
    if path.is_symlink():
        raise StoreError(
            f"{path} is a symbolic link; a store holds only its own files, so pack refuses links"
        )
    return json.loads(path.read_text())


def _packed_meta(store: Store, config: PackConfig, digests: dict) -> dict:
    """The packed copy's root attribute: the source's, sealed with ``digests``, plus a history entry."""
    meta = dict(store.meta)
    meta["checksums"] = {"algorithm": "sha256", "time": now_iso(), "arrays": digests}
    entry = {
        "command": "pack",
        "time": now_iso(),
        "rise_version": __version__,
        "config": {"store": config.store, "output": config.output, "force": config.force},
        "rows": store.rows,
        "episodes": store.num_episodes,
    }
    meta["history"] = [*meta.get("history", []), entry]
    return meta


def store_files(src: Path, bounds: dict[str, int], keep: dict[str, int | None]) -> tuple[list, list[str]]:
    """The store's own files to pack (``[(key, path)]``, sorted) and the other files left out.

    Walks without following links and refuses any link: its target may lie outside the store folder.
    Array metadata and the root ``zarr.json`` are not listed: :func:`pack` writes those itself.
    """
    own, left_out = [], []
    groups = {"episodes", "embeddings", *(name.rsplit("/", 1)[0] for name in bounds if "/" in name)}
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(src).as_posix()
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != LOCAL_STATE]  # writer locks: not part of the data
        for name in sorted(dirnames + filenames):
            if (here / name).is_symlink():
                raise StoreError(
                    f"{here / name} is a symbolic link; a store holds only its own files, so pack refuses "
                    "links (replace it with the file it points to, or remove it)"
                )
        for name in filenames:
            rel = (here / name).relative_to(src).as_posix()
            if rel == "zarr.json" or rel.removesuffix("/zarr.json") in bounds:
                continue  # the root and array metadata: pack writes those itself
            if ".partial" in name:
                continue  # an interrupted write's temp file
            if _is_store_key(rel, bounds, groups):
                if _keep_chunk(rel, keep):
                    own.append((rel, here / name))
            else:
                left_out.append(rel)
    return sorted(own), sorted(left_out)


def _is_store_key(rel: str, bounds: dict[str, int], groups: set[str]) -> bool:
    """A chunk file of a known array, or a group's ``zarr.json``."""
    if rel.endswith("/zarr.json"):
        return rel.removesuffix("/zarr.json") in groups
    return any(rel.startswith(f"{name}/c") for name in bounds)  # chunk keys: c/0/0 (or c.0.0)


def _keep_chunk(rel: str, keep: dict[str, int | None]) -> bool:
    """False for a chunk file of an array that lies wholly past its committed rows (keys c/12/0 or c.12.0)."""
    for name, rows_chunks in keep.items():
        for sep in "/.":
            if rows_chunks is not None and rel.startswith(f"{name}/c{sep}"):
                first = rel[len(name) + 3 :].split(sep, 1)[0]
                return not first.isdigit() or int(first) < rows_chunks
    return True
