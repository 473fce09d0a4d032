"""Keeping what online training plays: finished episodes and the actor's embeddings, as a store.

``--save-store PATH`` creates (or appends to) a store of the run's env; ``--write-back`` appends to the
store the run learns from. Rows get collect's layout (RGB frames when the env has them), and the
embeddings the actor already computed for each frame are committed with their episode under the
encoder's embeddings name, recorded with its :class:`~rise_data.encode.encoders.EncoderRecipe`, so nothing is
encoded twice and ``rise-agent train --store`` can pretrain on the result. The store's writer lock is
held for the life of the run; episodes are appended by a writer thread so compression never stalls
learning (collect's :class:`~rise_data.collect.EpisodeWriter`).
"""

from __future__ import annotations

import contextlib

from rise_data.collect import EpisodeWriter, open_for_append
from rise_data.collect.rollout import Finished
from rise_data.encode.encoders import EncoderRecipe, embedding_encoder, library_versions
from rise_data.encode.spec import EncoderError
from rise_data.store import StoreError, WritableStore
from rise_data.store.format import now_iso
from rise_data.store.lock import store_lock

__all__ = ["EpisodeSink"]


def _ensure_embedding(store: WritableStore, name: str, spec: EncoderRecipe, config: dict) -> None:
    """Create the embeddings array for the actor's encoder, or check an existing one was made by it."""
    if name in store.embedding_names():
        try:
            old = embedding_encoder(store, name)
        except EncoderError as e:
            raise StoreError(str(e)) from None
        diff = old.differences(spec)
        if diff:
            raise StoreError(
                f"embeddings '{name}' of {store.path} come from a different encoder ({', '.join(diff)}); "
                "choose another --save-store path"
            )
        return
    from rise_data.store import StoreLayout

    record = {
        "encoder": spec.to_json(),
        "dtype": "float16",
        "versions": library_versions(),
        "config": config,
        "created": now_iso(),
    }
    store.create_embedding(name, spec.dim, "float16", record, StoreLayout(**store.meta.get("layout", {})))


class EpisodeSink:
    """Appends finished episodes (with their embeddings) to a store from a writer thread."""

    def __init__(
        self,
        path: str,
        env_spec: dict,
        encoder_spec: EncoderRecipe | None,
        embedding: str | None,
        config: dict,
        command: str,
    ):
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(store_lock(path, command))
        try:
            self.store = open_for_append(path, env_spec, frames=None)
            self.embedding = None
            if encoder_spec is not None and embedding is not None:
                self.embedding = embedding
                _ensure_embedding(self.store, embedding, encoder_spec, config)
            self.store.log_write(
                command, config, policy={"name": "rise-agent online"}, start_row=self.store.rows
            )
        except BaseException:
            self._lock.close()
            raise
        self.frames = self.store.has_frames
        self.writer = EpisodeWriter(self.store)  # collect's writer: every finished episode committed promptly
        self.writer.start()

    def put(self, finished: list[Finished]) -> None:
        """Hand over the rows of finished episodes (cut ones included: they are marked truncated)."""
        batch = [f.episode for f in finished if f.episode is not None and f.length > 0]
        if batch:
            self.writer.put(batch)

    def close(self) -> None:
        """Commit what is handed over, stop the writer thread and release the lock."""
        try:
            self.writer.close()
        finally:
            self._lock.close()
