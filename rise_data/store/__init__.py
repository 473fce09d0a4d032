"""The rise store: a Zarr v3 group of step-major arrays, an episode index and embeddings.

The spec is docs/store-format.md. In short: one row per step, episodes contiguous, an episode of T actions
has T+1 rows (the last holds the final observation). The root attribute ``rise`` holds the format version,
the env spec and the **commit point** (``rows``, ``episodes``); every reader uses only the committed prefix.

This face holds what a user of stores needs: open or create one, read it, append episodes, and the
errors. Lower-level names live in their modules and are imported from there:

- :mod:`~rise_data.store.format`: the format's names (version, schemas, layout, errors);
- :mod:`~rise_data.store.store`: the reader, :class:`Store`;
- :mod:`~rise_data.store.write`: the writer, :class:`WritableStore`, and :func:`create_store`;
- :mod:`~rise_data.store.durable`: commits that survive power loss (the fsyncing local backend);
- :mod:`~rise_data.store.open`: :func:`open_store` for folders, packed ``.zip`` files and URLs;
- :mod:`~rise_data.store.checksums`: per-array sha256 and the data fingerprint;
- :mod:`~rise_data.store.lock` (one writer per store), :mod:`~rise_data.store.check` (validation) and
  :mod:`~rise_data.store.maintain` (seal, repair).
"""

from rise_data.store.format import CorruptStoreError, Durability, StoreError, StoreLayout
from rise_data.store.lock import LockHeld
from rise_data.store.open import open_store
from rise_data.store.store import Store
from rise_data.store.write import Episode, WritableStore, create_store

__all__ = [
    "CorruptStoreError",
    "Durability",
    "Episode",
    "LockHeld",
    "Store",
    "StoreError",
    "StoreLayout",
    "WritableStore",
    "create_store",
    "open_store",
]
