"""Sprite atlases: frames packed into one image, with metadata engines read.

This is the grid atlas the Blender extension writes today (fixed cells, row-major, optional padding), with
TexturePacker JSON-hash metadata (frames, animations, pivot) that Phaser and Pixi read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from .errors import InvalidInputError


@dataclass(frozen=True)
class AtlasRect:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Atlas:
    image: Image.Image
    rects: tuple[AtlasRect, ...]
    columns: int
    rows: int


def pack_grid(frames: Sequence[Image.Image], columns: int | None = None, padding: int = 0) -> Atlas:
    """Frames of one size in a grid (row-major), `padding` pixels around every cell."""
    if not frames:
        raise InvalidInputError("no frames to pack")
    width, height = frames[0].size
    if any(frame.size != (width, height) for frame in frames):
        raise InvalidInputError("grid packing needs frames of one size")
    if padding < 0:
        raise InvalidInputError(f"padding must be >= 0, got {padding}")
    columns = columns or math.ceil(math.sqrt(len(frames)))
    columns = max(1, min(columns, len(frames)))
    rows = math.ceil(len(frames) / columns)
    cell_w, cell_h = width + 2 * padding, height + 2 * padding
    mode = "RGBA" if any(frame.mode == "RGBA" for frame in frames) else "RGB"
    sheet = Image.new(mode, (columns * cell_w, rows * cell_h), (0, 0, 0, 0) if mode == "RGBA" else (0, 0, 0))
    rects = []
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        x, y = column * cell_w + padding, row * cell_h + padding
        sheet.paste(frame.convert(mode), (x, y))
        rects.append(AtlasRect(x, y, width, height))
    return Atlas(sheet, tuple(rects), columns, rows)


def texturepacker_hash(atlas: Atlas, image_name: str, frame_names: Sequence[str], animation: str,
                       fps: float, loop: bool) -> dict:
    """TexturePacker's JSON (hash) layout, with `animations` and a bottom-centre `pivot`."""
    frames = {}
    for name, rect in zip(frame_names, atlas.rects):
        frames[name] = {
            "frame": {"x": rect.x, "y": rect.y, "w": rect.width, "h": rect.height},
            "rotated": False,
            "trimmed": False,
            "spriteSourceSize": {"x": 0, "y": 0, "w": rect.width, "h": rect.height},
            "sourceSize": {"w": rect.width, "h": rect.height},
            "pivot": {"x": 0.5, "y": 1.0},
            "duration": round(1000 / fps),
        }
    return {
        "frames": frames,
        "animations": {animation: list(frame_names)},
        "meta": {
            "app": "spritediff",
            "version": "1.0",
            "image": image_name,
            "format": "RGBA8888" if atlas.image.mode == "RGBA" else "RGB888",
            "size": {"w": atlas.image.width, "h": atlas.image.height},
            "scale": "1",
            "frameRate": fps,
            "loop": loop,
        },
    }
