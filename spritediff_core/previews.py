"""Animated previews of an animation (GIF): the right frame time, looping forever only for cycles."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image

from .errors import InvalidInputError


def save_gif(frames: Sequence[Image.Image], path: str | Path, fps: float, loop: bool) -> Path:
    """A GIF playing `frames` at `fps`; cycles repeat forever, one-shots play once."""
    if not frames:
        raise InvalidInputError("no frames for a preview")
    if fps <= 0:
        raise InvalidInputError(f"fps must be positive, got {fps}")
    options = {"save_all": True, "append_images": list(frames[1:]), "duration": round(1000 / fps),
               "disposal": 2, "optimize": False}
    if loop:
        options["loop"] = 0  # Netscape extension: repeat forever; without it viewers play once
    frames[0].save(path, format="GIF", **options)
    return Path(path)
