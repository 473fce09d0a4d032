"""Recording evaluation episodes: RGB (or agent-view) frames to a .gif (Pillow) or .mp4 (cv2)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rise_data.envs import Step
from rise_data.options import ConfigError

__all__ = ["RECORD_FPS", "RECORD_MAX_FRAMES", "VIDEO_SUFFIXES", "record_frame", "write_video"]

RECORD_FPS = 15  # Atari agent steps: 60 Hz / frameskip 4
RECORD_MAX_FRAMES = 5_000  # a recording stops here (bounded memory; ~5.5 min at 15 fps)
VIDEO_SUFFIXES = (".gif", ".mp4")


def record_frame(step: Step, env: int) -> np.ndarray:
    """Env ``env``'s image of ``step`` to record: its RGB frame, or the agent view when the env has none."""
    return np.array(step.frame[env] if step.frame is not None else step.obs[env])


def write_video(path: str | os.PathLike, frames: list[np.ndarray], fps: int = RECORD_FPS) -> Path:
    """Write RGB (H,W,3) or gray (H,W) uint8 frames as a .gif (Pillow) or .mp4 (cv2, mp4v codec)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ConfigError(f"cannot record to {path}: use a .gif or .mp4 file name")
    if not frames:
        raise ValueError("no frames to record")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(
            path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=False
        )
        return path
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise ValueError(f"cv2 cannot write {path} (no mp4v encoder in this OpenCV build): record a .gif")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR if f.ndim == 3 else cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()
    return path
