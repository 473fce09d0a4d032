"""An active image memory task: a T-maze whose cue must be carried down a corridor the agent walks itself.

The agent starts at the foot of a corridor, where a coloured square (the cue: red or green) fills the
middle of the view. Action 0 (forward) moves it one cell along the corridor; actions 1 (left) and 2 (right)
leave it where it is. Every corridor frame is visual noise with a progress bar along the top, so the
position is visible but the cue is not. After ``length`` forward moves the agent stands at the junction
(a white bar along the bottom): there left is right for a red cue and right for a green one. The correct
turn gives +1, the wrong one -0.1, and either ends the episode; forward at the junction changes nothing.
An episode not ended by ``max_steps`` steps is truncated (a time limit, not a terminal state).
``step_cost`` (default 0) is subtracted at every step that does not answer: a variant in which a move
that changes nothing is no longer free. ``cue="texture"`` draws the two cues as white stripes on black,
vertical or horizontal, one pixel in every ``size // 16``: each cell of a 16x16 area downsample holds the
same share of white in both, so a 16x16 gray view (the ``downsample`` encoder, the agent's own 16x16 view)
cannot tell the cues apart while a pretrained encoder can (the encoder ablation of docs/results.md).

So the agent must move between the cue and the answer, an episode's length depends on its actions, and
moves that change nothing are allowed: a policy that never moves is possible and earns nothing. Without
memory of the cue a policy scores 50 % at best. ``cue_at_junction=True`` (registered as
``rise/TMazeVisible-v0``) draws the cue at the junction too: the same task with no memory need, the control.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rise_data.envs.errors import EnvError

FORWARD, LEFT, RIGHT = 0, 1, 2
# Red and green differ in hue and in gray level (ITU-R 601: 76 vs 150), so a gray agent view and the
# gray ``downsample`` encoder can both tell them apart.
CUE_COLOURS = ((255, 0, 0), (0, 255, 0))
CUES = ("colour", "texture")
CORRECT = 1.0
WRONG = -0.1


class TMazeEnv(gym.Env):
    """T-maze with a cue at the start, a corridor of ``length`` cells and a junction; RGB observations."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        length: int = 8,
        size: int = 48,
        noise: int = 40,
        max_steps: int = 64,
        cue_at_junction: bool = False,
        step_cost: float = 0.0,
        cue: str = "colour",
        render_mode: str | None = None,
    ):
        self.length, self.size, self.noise, self.max_steps = (
            int(length),
            int(size),
            int(noise),
            int(max_steps),
        )
        if self.length < 1 or self.max_steps <= self.length:
            raise EnvError(
                f"T-maze needs length >= 1 and max_steps > length, got {length} and {max_steps}: "
                "change the env options"
            )
        if cue not in CUES or (cue == "texture" and self.size % 16):
            raise EnvError(
                f"T-maze cue must be one of {CUES} (texture needs a size divisible by 16), got cue={cue!r} "
                f"and size={size}: change the env options"
            )
        self.cue_at_junction, self.step_cost, self.cue = bool(cue_at_junction), float(step_cost), cue
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)  # forward, left, right
        self._t, self._pos, self._cue, self._last = 0, 0, 0, None

    def _frame(self) -> np.ndarray:
        s, q = self.size, self.size // 4
        img = self.np_random.integers(0, self.noise + 1, (s, s, 3), dtype=np.uint8)
        img[: q // 2, : s * self._pos // self.length] = 255  # progress bar: how far along the corridor
        junction = self._pos == self.length
        if self._pos == 0 or (junction and self.cue_at_junction):
            img[q : s - q, q : s - q] = self._cue_patch(s - 2 * q)
        if junction:
            img[s - q // 2 :, :] = 255
        self._last = img
        return img

    def _cue_patch(self, side: int) -> np.ndarray:
        if self.cue == "colour":
            return np.asarray(CUE_COLOURS[self._cue], np.uint8)
        stripes = (np.arange(side) % (self.size // 16) == 0).astype(np.uint8) * 255
        patch = np.broadcast_to(stripes[None, :] if self._cue == 0 else stripes[:, None], (side, side))
        return patch[..., None]  # the same white in R, G and B

    def _info(self) -> dict:
        return {"cue": self._cue, "position": self._pos}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t, self._pos, self._cue = 0, 0, int(self.np_random.integers(2))
        return self._frame(), self._info()

    def step(self, action):
        action, self._t = int(action), self._t + 1
        if self._pos == self.length and action in (LEFT, RIGHT):
            success = action == LEFT + self._cue
            info = {**self._info(), "success": success}
            return self._last, CORRECT if success else WRONG, True, False, info
        if action == FORWARD and self._pos < self.length:
            self._pos += 1
        return self._frame(), -self.step_cost, False, self._t >= self.max_steps, self._info()

    def render(self):
        return self._last
