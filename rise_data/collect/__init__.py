"""Collection: step a vector env with a policy and append whole episodes to a store.

- :mod:`~rise_data.collect.config`: :class:`CollectConfig` (what ``rise-data collect`` is asked to do);
- :mod:`~rise_data.collect.rollout`: :class:`Rollout`, the one rollout driver every loop steps envs through;
- :mod:`~rise_data.collect.writer`: :func:`open_for_append` and :class:`EpisodeWriter`, the one append path;
- :mod:`~rise_data.collect.run`: :func:`collect`, holding the store's writer lock;
- :mod:`~rise_data.collect.policies`: the behaviour policies (random, a checkpoint, a plug-in).

Importing this package loads only the config: the rest loads on first use, so the CLI starts without the
env families.
"""

from rise_data.collect.config import CollectConfig

_LAZY = (
    "BLOCK_ROWS",
    "Finished",
    "Rollout",
    "collect",
    "open_or_create",
    "PENDING_ROWS",
    "EpisodeWriter",
    "open_for_append",
)

__all__ = [
    "BLOCK_ROWS",
    "PENDING_ROWS",
    "CollectConfig",
    "EpisodeWriter",
    "Finished",
    "Rollout",
    "collect",
    "open_for_append",
    "open_or_create",
]


def __getattr__(name: str):
    if name in _LAZY:  # stepping envs needs the env families: load them only when used
        from rise_data.collect import rollout, run, writer

        return next(getattr(m, name) for m in (rollout, run, writer) if hasattr(m, name))
    raise AttributeError(f"module 'rise_data.collect' has no attribute {name!r}")
