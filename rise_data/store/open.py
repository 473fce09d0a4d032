"""Opening a store where it lives: a folder (read or append), a packed ``.zip`` or an fsspec URL (read-only).

Every backend's failure (a missing bucket, a damaged ``zarr.json``, a zip with unsafe member names) ends
in one :class:`~rise_data.store.format.StoreError` line naming the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import zarr

from rise_data.store.durable import local_backend
from rise_data.store.format import CorruptStoreError, Durability, StoreError, store_kind
from rise_data.store.store import Store
from rise_data.store.write import WritableStore


def storage_options_for(url: str) -> dict:
    """fsspec options for a URL, from the usual environment variables (s3: AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_DEFAULT_REGION).

    Other protocols get no options: their libraries read their own environment (gcsfs, adlfs, ...).
    """
    protocol = url.split("://", 1)[0].split("::")[-1].lower()
    if protocol not in ("s3", "s3a"):
        return {}
    env = os.environ
    opts: dict[str, Any] = {}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        opts["key"] = env["AWS_ACCESS_KEY_ID"]
        opts["secret"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            opts["token"] = env["AWS_SESSION_TOKEN"]
    elif env.get("AWS_NO_SIGN_REQUEST", "").lower() in ("1", "true", "yes"):
        opts["anon"] = True
    client: dict[str, str] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        client["endpoint_url"] = endpoint
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")
    if region:
        client["region_name"] = region
    if client:
        opts["client_kwargs"] = client
    return opts


def open_store(
    path: str | os.PathLike,
    mode: str = "r",
    storage_options: dict | None = None,
    durability: Durability = "safe",
) -> Store:
    """Open an existing store read-only (``"r"``: a :class:`Store`) or for appending (``"a"``: a
    :class:`WritableStore` whose commits are fsynced unless ``durability="fast"``).

    ``path`` is a store directory, a packed ``*.zip`` (see ``rise-data pack``), or an fsspec URL
    (``s3://bucket/pong.zarr``, ``s3://bucket/pong.zip``, ``file:///...``); zips and URLs are read-only.
    ``storage_options`` default to :func:`storage_options_for` (credentials from the environment).
    """
    path = str(path)
    kind = store_kind(path)
    if kind != "directory":
        return _open_readonly(path, kind, mode, storage_options)
    if not Path(path).exists():
        raise StoreError(f"{path} does not exist; create it with: rise-data collect ENV_ID {path}")
    if not Path(path).is_dir():
        raise StoreError(
            f"{path} is a file, not a store directory; give a store directory (or a packed .zip)"
        )
    try:
        backend = path if mode == "r" else local_backend(path, durability)
        group = zarr.open_group(backend, mode="r" if mode == "r" else "r+", zarr_format=3)
    except json.JSONDecodeError as e:
        raise CorruptStoreError(
            f"{Path(path) / 'zarr.json'} is damaged (truncated? {e}); restore the store from its pack or a copy"
        ) from None
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise StoreError(f"{path} is not a readable Zarr v3 group ({type(e).__name__}: {e})") from None
    return Store(group, path) if mode == "r" else WritableStore(group, path)


def _open_readonly(path: str, kind: str, mode: str, storage_options: dict | None) -> Store:
    from zarr.abc.store import Store as StoreLike
    from zarr.storage import FsspecStore, ZipStore

    what = "a packed store" if kind == "zip" else "remote"
    if mode != "r":
        raise StoreError(
            f"{path} is {what} and read-only; write to a store directory (e.g. rise-data import)"
        )
    if kind == "zip" and not Path(path).is_file():
        raise StoreError(f"{path} does not exist; make it with: rise-data pack STORE {path}")
    opts = storage_options_for(path) if storage_options is None else storage_options
    if kind == "zip":
        check_zip_members(path)
    backend: StoreLike
    try:
        if kind == "zip":
            backend = ZipStore(path, mode="r")
        elif path.lower().endswith(".zip"):  # a packed store behind a URL: zipfile over the remote file
            backend = _url_zip_store(path, opts)
        else:
            backend = FsspecStore.from_url(path, read_only=True, storage_options=opts)
        group = zarr.open_group(store=backend, mode="r", zarr_format=3)
    except ImportError as e:  # the URL's fsspec backend is not installed
        raise StoreError(missing_backend(path, e)) from None
    except Exception as e:  # any backend's error (missing key, credentials, network): one line
        missing = _missing_bucket(path, opts) if kind == "url" else None
        if missing:
            raise StoreError(missing) from None
        raise StoreError(f"{path} is not a readable Zarr v3 group ({type(e).__name__}: {e})") from None
    return Store(group, path)


# fsspec protocol -> the package that reads it (s3fs is a rise dependency; the others are the user's choice)
FSSPEC_BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


def missing_backend(url: str, e: ImportError) -> str:
    """One line naming the package to install for a URL whose fsspec backend is missing."""
    protocol = url.split("://", 1)[0].split("::")[-1].lower()
    package = FSSPEC_BACKENDS.get(protocol) or getattr(e, "name", None) or "the fsspec backend"
    return f"{url}: reading {protocol}:// URLs needs {package}, which is not installed; install it with: pip install {package}"


def _missing_bucket(url: str, opts: dict) -> str | None:
    """A one-line reason when a URL's bucket (or store prefix) does not exist; None if it does or cannot tell."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url, **opts)
        bucket = root.split("/", 1)[0]
        if not fs.exists(bucket):
            return (
                f"{url}: bucket '{bucket}' does not exist (or is not visible with these credentials); check the "
                "bucket name, AWS_ENDPOINT_URL and the credentials"
            )
        if not fs.exists(root.rstrip("/") + "/zarr.json"):
            return (
                f"{url}: no store at this path (no zarr.json under it); check the path after the bucket name"
            )
    except Exception:  # the backend cannot answer (network, permissions): keep the original error
        return None
    return None


def check_zip_members(path: str) -> None:
    """Refuse a zip whose member names could escape a folder or are links: a packed store holds neither.

    Reading never extracts members, but a zip that holds such names was not written by ``rise-data pack``
    and may be unpacked by other tools; refusing it keeps every reader on the safe side.
    """
    import stat
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (OSError, zipfile.BadZipFile) as e:
        raise CorruptStoreError(
            f"{path} is not a readable zip file ({e}); re-pack or re-download it"
        ) from None
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise CorruptStoreError(
                f"{path} holds member '{name}', whose name escapes the store folder; rise-data pack never "
                "writes such names: do not use or unpack this file"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise CorruptStoreError(
                f"{path} holds member '{name}', a symbolic link; rise-data pack never writes links: do not "
                "use or unpack this file"
            )


def _url_zip_store(url: str, opts: dict):
    """zarr's ZipStore reading a zip behind a URL through an fsspec file (ranged reads, nothing downloaded whole).

    (fsspec's ``zip::`` URLs list nested groups wrongly through zarr's FsspecStore, so zarr's own
    ZipStore reads the remote file object instead.)
    """
    import threading
    import zipfile

    import fsspec
    from zarr.storage import ZipStore

    class _FileZipStore(ZipStore):
        def __init__(self, fileobj: Any, name: str):
            super().__init__(Path(name), mode="r")
            self._fileobj = fileobj

        def _sync_open(self) -> None:
            if self._is_open:
                raise ValueError("store is already open")
            self._lock = threading.RLock()
            self._zf = zipfile.ZipFile(self._fileobj, mode="r")
            self._is_open = True

    return _FileZipStore(fsspec.open(url, "rb", **opts).open(), url)
