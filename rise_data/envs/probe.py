"""A memory probe: a cue shown at the first step must be recalled ``delay`` steps later.

Each episode shows a white square on the left or the right (the cue), then ``delay`` frames of
distractor noise with no cue, then a query frame (a bar along the bottom). At the query, action 0
("left") or 1 ("right") is rewarded +1 when it matches the cue and -1 otherwise; actions before the
query do nothing. A policy without memory of the first frame scores 50 % at best.

``cue_at_query=True`` (registered as ``rise/CueVisible-v0``) draws the cue on the query frame too: the
same task with no memory need, the control against which a memory agent must match one without memory.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class CueMemoryEnv(gym.Env):
    """Recall-after-delay probe with RGB image observations."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        delay: int = 30,
        size: int = 64,
        noise: int = 40,
        cue_at_query: bool = False,
        render_mode: str | None = None,
    ):
        self.delay, self.size, self.noise = int(delay), int(size), int(noise)
        self.cue_at_query = bool(cue_at_query)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)  # left, right, no-op
        self._t, self._cue, self._last = 0, 0, None

    def _frame(self) -> np.ndarray:
        s, q = self.size, self.size // 4
        img = self.np_random.integers(0, self.noise + 1, (s, s, 3), dtype=np.uint8)
        query = self._t == self.delay + 1
        if self._t == 0 or (query and self.cue_at_query):
            x0 = q // 2 if self._cue == 0 else s - q - q // 2
            img[s // 2 - q // 2 : s // 2 + q // 2, x0 : x0 + q] = 255
        if query:
            img[s - q // 2 :, :] = 255
        self._last = img
        return img

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t, self._cue = 0, int(self.np_random.integers(2))
        return self._frame(), {"cue": self._cue}

    def step(self, action):
        if self._t == self.delay + 1:
            reward = 1.0 if int(action) == self._cue else -1.0
            return self._last, reward, True, False, {"cue": self._cue, "success": reward > 0}
        self._t += 1
        return self._frame(), 0.0, False, False, {"cue": self._cue}

    def render(self):
        return self._last
