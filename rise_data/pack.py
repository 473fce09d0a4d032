"""``rise-data pack``: a store directory as one ``.zip`` file, written once, readable in place.

The zip holds the store's files under the same keys with **stored** (uncompressed) entries: chunks are
zstd already, and an uncompressed member can be read at an offset, so zarr's ``ZipStore`` (or fsspec's
``zip::s3://...``) reads chunks straight from the file. Zarr's ZipStore cannot be appended to safely,
so a packed store is read-only; to change it, import/copy it to a directory.

Packing keeps only committed data (arrays are cut to the commit point and chunks wholly past it are
left out; ``*.partial`` files are skipped), seals the packed copy (per-array sha256 computed from the
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

from rise_data import __version__
from rise_data.store import ATTR, EPISODE_ARRAYS, Store, StoreError, compute_checksums, now_iso, open_store


@dataclass(frozen=True)
class PackConfig:
    store: str
    output: str
    force: bool = False  # replace an existing output file


def verify_against_recorded(store: Store, digests: dict) -> None:
    """Raise if checksums recorded in ``store`` disagree with freshly computed ones over the same rows."""
    for name, rec in store.checksums.items():
        new = digests.get(name)
        if new is None or rec.get("rows") != new["rows"] or rec.get("created") != new.get("created"):
            continue  # covers other rows (appended since) or another encode: not comparable
        if rec["sha256"] != new["sha256"]:
            raise StoreError(
                f"{store.path}: '{name}' no longer matches its recorded sha256 (corrupt or edited by hand); "
                f"run: rise-data check --deep {store.path}"
            )


def _array_bounds(store: Store) -> dict[str, int]:
    """Committed length along axis 0 of every array (what the packed copy's shapes are cut to)."""
    bounds = {name: store.rows for name, _ in store._step_arrays()}
    bounds.update({f"episodes/{k}": store.num_episodes for k in EPISODE_ARRAYS})
    bounds.update({f"embeddings/{n}": store.rows for n in store.embedding_names()})
    return bounds


def _cut_metadata(meta: dict, bound: int) -> tuple[dict, int | None]:
    """An array's zarr.json cut to ``bound`` rows, and the number of row chunks to keep (None: keep all)."""
    shape = meta.get("shape")
    chunks = ((meta.get("chunk_grid") or {}).get("configuration") or {}).get("chunk_shape")
    enc = meta.get("chunk_key_encoding") or {}
    sep = (enc.get("configuration") or {}).get("separator", "/")
    if not shape or not chunks or enc.get("name") != "default" or sep != "/" or shape[0] < bound:
        return meta, None
    return {**meta, "shape": [bound, *shape[1:]]}, -(-bound // chunks[0])


def pack(config: PackConfig) -> dict:
    """Write the store directory ``config.store`` as one zip at ``config.output``; returns a summary."""
    from rise_data.check import check_store

    src, out = Path(config.store), Path(config.output)
    if not out.name.lower().endswith(".zip"):
        raise ValueError(f"the packed file must end in .zip (got {out}), so readers know to open it as one")
    store = open_store(config.store)
    if store.kind != "directory":
        raise StoreError(
            f"{config.store} is not a store directory; pack reads a directory (it is {store.kind})"
        )
    if out.exists() and not config.force:
        raise StoreError(f"{out} exists; a packed store is written once (pass --force to replace it)")
    errors = [p for p in check_store(config.store) if p.severity == "error"]
    if errors:
        raise StoreError(f"{config.store} is not valid ({errors[0]}); fix it before packing")
    t0 = time.perf_counter()
    digests = compute_checksums(store)
    verify_against_recorded(store, digests)
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
    bounds = _array_bounds(store)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    files = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        keep: dict[str, int | None] = {}
        for name, bound in bounds.items():  # array metadata first: decides which chunks to keep
            meta_path = src / name / "zarr.json"
            arr_meta, keep[name] = _cut_metadata(json.loads(meta_path.read_text()), bound)
            z.writestr(f"{name}/zarr.json", json.dumps(arr_meta, indent=2))
            files += 1
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            if not path.is_file() or rel == "zarr.json" or ".partial" in path.name:
                continue
            if rel.endswith("/zarr.json") and rel[: -len("/zarr.json")] in bounds:
                continue  # written above
            if not _keep_chunk(rel, keep):
                continue
            z.write(path, rel)
            files += 1
        root = json.loads((src / "zarr.json").read_text())
        root.setdefault("attributes", {})[ATTR] = meta
        z.writestr("zarr.json", json.dumps(root, indent=2))  # the root (commit point, checksums) last
        files += 1
    os.replace(tmp, out)
    return {
        "output": str(out),
        "bytes": out.stat().st_size,
        "files": files,
        "rows": store.rows,
        "episodes": store.num_episodes,
        "seconds": time.perf_counter() - t0,
    }


def _keep_chunk(rel: str, keep: dict[str, int | None]) -> bool:
    """False for a chunk file of an array that lies wholly past its committed rows."""
    if "/c/" not in rel:
        return True
    name, key = rel.split("/c/", 1)
    if name not in keep or keep[name] is None:
        return True
    first = key.split("/", 1)[0]
    return not first.isdigit() or int(first) < keep[name]
