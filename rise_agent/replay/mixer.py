"""The mixer: how many rows of each batch come from the store and how many from the online ring.

``offline_fraction = f`` means exactly ``round(f * B)`` rows of every batch of ``B`` are the store's
(halves round up) and the rest the ring's, from the first sample on: 0 never touches the store, 1 never
touches the ring. When a source is missing the fraction is implied: 1 with only a store (offline
training), 0 with only a ring (online from scratch). With both and no fraction given, the default is
0.5, RLPD's symmetric sampling (Ball et al. 2023, "Efficient Online RL with Offline Data"); an explicit
fraction that asks for a missing source is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rise_data.errors import UserError

__all__ = ["DEFAULT_OFFLINE_FRACTION", "Mixer", "split_batch"]

DEFAULT_OFFLINE_FRACTION = 0.5


def split_batch(batch_size: int, fraction: float) -> tuple[int, int]:
    """``(store rows, ring rows)`` of a batch: ``round(fraction * batch_size)`` with halves up, the rest."""
    n = min(batch_size, math.floor(fraction * batch_size + 0.5))
    return n, batch_size - n


@dataclass(frozen=True)
class Mixer:
    """The exact store/ring split of every batch."""

    offline_fraction: float

    @classmethod
    def resolve(cls, fraction: float | None, has_store: bool, has_ring: bool) -> Mixer:
        """The mixer for the sources present; refuses a fraction that needs a missing source."""
        if not (has_store or has_ring):
            raise UserError("a replay needs a store or an online ring: give a store, or num_envs > 0")
        implied: float | None
        if not has_ring:
            implied, missing = 1.0, "an online ring (num_envs > 0)"
        elif not has_store:
            implied, missing = 0.0, "a store"
        else:
            implied = missing = None
        if fraction is None:
            return cls(DEFAULT_OFFLINE_FRACTION if implied is None else implied)
        if implied is not None and fraction != implied:
            raise UserError(
                f"offline_fraction={fraction} needs {missing}, which this replay lacks; "
                f"leave it unset (the only possible value here is {implied:g})"
            )
        return cls(float(fraction))

    def split(self, batch_size: int) -> tuple[int, int]:
        """``(store rows, ring rows)`` of a batch of ``batch_size``."""
        return split_batch(batch_size, self.offline_fraction)
