"""Encoding: run a frozen encoder over a store's frames once and store the embeddings with provenance.

- :mod:`~rise_data.encode.config`: :class:`EncodeConfig` (what ``rise-data encode`` is asked to do);
- :mod:`~rise_data.encode.spec`: the encoder record, :class:`EncoderSpec` (torch-free);
- :mod:`~rise_data.encode.encoders`: the frozen encoders and their registry (torch);
- :mod:`~rise_data.encode.run`: the pipelined, resumable encode job (:func:`encode`);
- :mod:`~rise_data.encode.distributed`: ranks under torchrun, each encoding whole chunks of its own rows.

Importing this package does not import torch: the job's names load with :mod:`~rise_data.encode.run`
on first use, so readers that only parse a record (``rise-data check``, ``info``) stay light.
"""

from rise_data.encode.config import EncodeConfig
from rise_data.encode.spec import EncoderError, EncoderSpec, Preprocessing

_RUN = ("embedding_name", "embedding_record", "encode", "open_for_encode", "prepare", "resolve_device")

__all__ = ["EncodeConfig", "EncoderError", "EncoderSpec", "Preprocessing", *_RUN]


def __getattr__(name: str):
    if name in _RUN:  # the job needs torch: load it only when used
        from rise_data.encode import run

        return getattr(run, name)
    raise AttributeError(f"module 'rise_data.encode' has no attribute {name!r}")
