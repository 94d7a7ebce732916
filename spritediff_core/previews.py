"""Animated previews of an animation: GIF, APNG and WebP with the right frame time, looping forever for
cycles and playing once for one-shots."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image

from .errors import InvalidInputError

PREVIEW_FORMATS = ("gif", "apng", "webp")


def save_preview(frames: Sequence[Image.Image], path: str | Path, fps: float, loop: bool,
                 fmt: str | None = None) -> Path:
    """An animated preview; the format comes from `fmt` or the file suffix (.gif, .png/.apng, .webp)."""
    if not frames:
        raise InvalidInputError("no frames for a preview")
    if fps <= 0:
        raise InvalidInputError(f"fps must be positive, got {fps}")
    path = Path(path)
    fmt = fmt or {".gif": "gif", ".png": "apng", ".apng": "apng", ".webp": "webp"}.get(path.suffix.lower())
    if fmt not in PREVIEW_FORMATS:
        raise InvalidInputError(f"preview format must be one of {PREVIEW_FORMATS}, got {fmt!r}")
    duration = round(1000 / fps)
    first, rest = frames[0], list(frames[1:])
    if fmt == "gif":
        options = {"disposal": 2}
        if loop:
            options["loop"] = 0  # Netscape extension: repeat forever; without it viewers play once
        first.save(path, format="GIF", save_all=True, append_images=rest, duration=duration, **options)
    elif fmt == "apng":  # num_plays: 0 = forever
        first.save(path, format="PNG", save_all=True, append_images=rest, duration=duration,
                   loop=0 if loop else 1, disposal=1, default_image=False)
    else:  # WebP: loop 0 = forever, 1 = once
        first.save(path, format="WEBP", save_all=True, append_images=rest, duration=duration,
                   loop=0 if loop else 1, lossless=True)
    return path


def save_gif(frames: Sequence[Image.Image], path: str | Path, fps: float, loop: bool) -> Path:
    return save_preview(frames, path, fps, loop, "gif")
