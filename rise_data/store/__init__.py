"""The rise store: a Zarr v3 group of step-major arrays, an episode index and embeddings.

The spec is docs/store-format.md. In short: one row per step, episodes contiguous, an episode of T actions
has T+1 rows (the last holds the final observation). The root attribute ``rise`` holds the format version,
the env spec and the **commit point** (``rows``, ``episodes``); every reader uses only the committed prefix.

- :mod:`~rise_data.store.format`: the format's names (version, schemas, layout, errors);
- :mod:`~rise_data.store.store`: the reader, :class:`Store`;
- :mod:`~rise_data.store.write`: the writer, :class:`WritableStore`, and :func:`create_store`;
- :mod:`~rise_data.store.open`: :func:`open_store` for folders, packed ``.zip`` files and URLs;
- :mod:`~rise_data.store.checksums`: per-array sha256 and the data fingerprint;
- :mod:`~rise_data.store.lock` (one writer per store) and :mod:`~rise_data.store.check` (validation).
"""

from rise_data.store.checksums import (
    READ_BLOCK_BYTES,
    RowHasher,
    block_rows,
    compute_checksums,
    data_fingerprint,
)
from rise_data.store.format import (
    ATTR,
    EPISODE_ARRAYS,
    FORMAT_NAME,
    FORMAT_VERSION,
    LOCK_DIR,
    RESTORE_HINT,
    STEP_SCALARS,
    CorruptStoreError,
    Durability,
    StoreError,
    StoreLayout,
    config_to_json,
    now_iso,
    store_kind,
)
from rise_data.store.open import check_zip_members, open_store, storage_options_for
from rise_data.store.store import CheckedArray, Store
from rise_data.store.write import (
    Episode,
    Rows,
    WritableStore,
    create_store,
    episode_columns,
    is_empty_folder,
    partial_files,
    write_rows,
)

__all__ = [
    "ATTR",
    "EPISODE_ARRAYS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LOCK_DIR",
    "READ_BLOCK_BYTES",
    "RESTORE_HINT",
    "STEP_SCALARS",
    "CheckedArray",
    "CorruptStoreError",
    "Durability",
    "Episode",
    "RowHasher",
    "Rows",
    "Store",
    "StoreError",
    "StoreLayout",
    "WritableStore",
    "block_rows",
    "check_zip_members",
    "compute_checksums",
    "config_to_json",
    "create_store",
    "data_fingerprint",
    "episode_columns",
    "is_empty_folder",
    "now_iso",
    "open_store",
    "partial_files",
    "storage_options_for",
    "store_kind",
    "write_rows",
]
