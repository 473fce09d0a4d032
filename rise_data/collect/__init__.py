"""Collection: step a vector env with a policy and append whole episodes to a store.

- :mod:`~rise_data.collect.config`: :class:`CollectConfig` (what ``rise-data collect`` is asked to do);
- :mod:`~rise_data.collect.rollout`: :class:`Rollout`, the one rollout driver every loop steps envs through;
- :mod:`~rise_data.collect.writer`: :func:`open_for_append` and :class:`EpisodeWriter`, the one append path;
- :mod:`~rise_data.collect.run`: :func:`collect`, holding the store's writer lock;
- :mod:`~rise_data.collect.policies`: the behaviour policies (random, a checkpoint, a plug-in).
"""

from rise_data.collect.config import CollectConfig
from rise_data.collect.rollout import BLOCK_ROWS, Finished, Rollout
from rise_data.collect.run import collect, open_or_create
from rise_data.collect.writer import PENDING_ROWS, EpisodeWriter, open_for_append

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
