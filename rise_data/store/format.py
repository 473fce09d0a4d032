"""The store format's names: version, attribute key, array schemas, layout, errors (docs/store-format.md).

Everything a reader or a writer of a rise store agrees on, and nothing that opens one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rise_data.errors import UserError
from rise_data.options import param

FORMAT_NAME = "rise-store"
FORMAT_VERSION = 2  # the version writers write; the rule (what bumps it) is in docs/store-format.md
READABLE_VERSIONS = (1, 2)  # 1: embeddings records in either layout of format 1 (encode.spec.upgrade_record)
ATTR = "rise"  # every rise attribute lives under this one key, so other tools' attributes never collide
LOCK_DIR = ".rise"  # local state of a store folder (writer locks), not part of the Zarr hierarchy
# what a store folder's commits survive (docs/store-format.md "Durability"; backends: store.durable.BACKENDS):
# safe = fsync in commit order (OS crash, power loss), fast = atomic renames only (kill -9; scratch stores)
Durability = Literal["safe", "fast"]

# name -> dtype of the scalar per-step arrays (one value per row)
STEP_SCALARS: dict[str, str] = {
    "action": "int64",
    "reward": "float32",
    "terminated": "bool",
    "truncated": "bool",
    "is_first": "bool",
    "is_last": "bool",
    "episode_id": "int64",
}
EPISODE_ARRAYS: dict[str, str] = {
    "start": "int64",
    "length": "int64",
    "return": "float64",
    "env_index": "int32",
}


class StoreError(UserError):
    """A store cannot be opened or written as asked; the message says what to do."""


class CorruptStoreError(StoreError):
    """The data on disk is damaged (a chunk that does not decode, a truncated ``zarr.json``): exit code 1."""


RESTORE_HINT = "run: rise-data check {path}, then restore the store from its pack or a copy"


def meta_file(path: str, name: str) -> str:
    """The ``zarr.json`` of array or group ``name`` (named in errors about damaged metadata)."""
    return f"{path.rstrip('/')}/{name}/zarr.json"


def store_kind(path: str | os.PathLike) -> str:
    """``url`` for fsspec URLs (``s3://``, ``gs://``, ``file://``, ...), ``zip`` for packed stores, else ``directory``."""
    path = str(path)
    if "://" in path:
        return "url"
    return "zip" if path.lower().endswith(".zip") and not os.path.isdir(path) else "directory"


@dataclass(frozen=True)
class StoreLayout:
    """Chunking and compression of a new store (see docs/store-format.md for the measurements)."""

    frame_chunk_bytes: int = param(2 << 20, "~2 MB uncompressed per image chunk")
    scalar_chunk_rows: int = param(1 << 16, "Rows per chunk of the per-step scalar arrays.")
    episode_chunk_rows: int = param(1 << 14, "Rows per chunk of the episode index arrays.")
    embedding_chunk_bytes: int = param(2 << 20, "~Bytes (uncompressed) per embeddings chunk.")
    zstd_level: int = param(
        1, "level 1 compresses Pong frames ~as well as 3 at a fraction of the CPU (benchmarks/chunking.py)"
    )

    def image_chunk_rows(self, row_shape: tuple[int, ...]) -> int:
        """Rows per image chunk: the largest power of two within ``frame_chunk_bytes`` (84x84: 256, 210x160x3: 16)."""
        return 1 << max(0, (self.frame_chunk_bytes // int(np.prod(row_shape))).bit_length() - 1)


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def config_to_json(config: Any) -> dict:
    """A frozen config dataclass as plain JSON (paths and tuples made JSON-native)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))
