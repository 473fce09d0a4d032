"""Replay for RISE/BTR as parts: sources, one sampler per source, and a mixer.

* **Sources** (:mod:`.sources`, :mod:`.ring`): :class:`StoreSource`, a store's transitions (read-only;
  frames from a memory-mapped ``.npy`` cache of the store, embeddings on the device), and
  :class:`OnlineRing`, per-env ring segments fed by vector envs, in RAM or in memory-mapped files inside
  ``ReplayConfig.ring_dir``. Each has its own length, n-step targets and frame-stack / context windows
  (the index math of :mod:`rise_data.windows`).
* **Samplers** (:mod:`.samplers`): :class:`UniformSampler` or :class:`PrioritizedSampler` (BTR's PER:
  ``(|td| + eps) ** alpha``, new rows at the running max priority), one per source, each a sum tree.
* **Mixer** (:mod:`.mixer`): ``offline_fraction = f`` takes exactly ``round(f * B)`` rows of every batch
  from the store and the rest from the ring, from the first sample on (0 never touches the store, 1
  never the ring). None = implied: 1 with only a store, 0 with only a ring, 0.5 with both.

Global row indices (``Batch.index``, :meth:`Replay.update_priorities`): the store's rows first
(``[0, N_store)``, the store's own row numbers), the ring's after them.

Counting and sampling rules callers rely on:

* ``len(replay)`` counts both sources; ``replay.online_transitions`` only the ring's sampleable
  transitions (what ``--learning-starts`` means), ``replay.store_transitions`` the store's.
* ``sample`` raises when a source that must supply rows has none sampleable yet (gate on
  ``online_transitions``); an explicit ``offline_fraction`` that needs a missing source is refused.
* New-row priority is the max over the source's own priorities (one max per sampler);
  ``replay.per_beta`` can be assigned to anneal the IS exponent.
* ``state_dict()`` is small with ``ring_dir`` (ends, open episodes, sampler weights); after
  ``load_state_dict`` the next online write must be ``add_first`` (the envs were reset).
"""

from rise_agent.replay.buffer import Replay
from rise_agent.replay.config import Batch, ReplayConfig
from rise_agent.replay.mixer import Mixer, split_batch
from rise_agent.replay.ring import OnlineRing
from rise_agent.replay.samplers import PrioritizedSampler, Sampler, UniformSampler
from rise_agent.replay.sources import StoreSource, obs_cache, obs_cache_path

__all__ = [
    "Batch",
    "Mixer",
    "OnlineRing",
    "PrioritizedSampler",
    "Replay",
    "ReplayConfig",
    "Sampler",
    "StoreSource",
    "UniformSampler",
    "obs_cache",
    "obs_cache_path",
    "split_batch",
]
