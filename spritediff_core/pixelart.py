"""Pixel-art finishing: a target sprite height, one shared palette, an optional 1 px outline.

All frames of a sheet are treated together: one scale factor (from the tallest content, so the character
keeps its size across frames and animations), one palette (N colours from all frames, or the reference
picture's), hard alpha.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from .atlas import union_box
from .errors import InvalidInputError


def scale_to_height(frames: Sequence[Image.Image], pixel_height: int) -> list[Image.Image]:
    """Resize so the union of the frames' content is `pixel_height` tall. Downscaling averages the
    premultiplied colours of each output pixel's area, then alpha is made hard (>= 50% is opaque)."""
    if pixel_height < 1:
        raise InvalidInputError(f"pixel height must be positive, got {pixel_height}")
    left, top, right, bottom = union_box(frames)
    factor = pixel_height / max(bottom - top, 1)
    width, height = frames[0].size
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    out = []
    for frame in frames:
        rgba = np.asarray(frame.convert("RGBA")).astype(np.float32) / 255
        premultiplied = np.dstack([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]])
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_NEAREST
        small = cv2.resize(premultiplied, size, interpolation=interpolation)
        alpha = small[..., 3:]
        colour = np.where(alpha > 1e-6, small[..., :3] / np.maximum(alpha, 1e-6), 0)
        hard = (alpha >= 0.5).astype(np.float32)
        out.append(Image.fromarray((np.dstack([colour, hard]) * 255).round().clip(0, 255).astype(np.uint8), "RGBA"))
    return out


def build_palette(frames: Sequence[Image.Image], colours: int) -> Image.Image:
    """A palette image of up to `colours` colours from the opaque pixels of all frames (median cut)."""
    if not 2 <= colours <= 256:
        raise InvalidInputError(f"palette size must be between 2 and 256, got {colours}")
    pixels = [np.asarray(f.convert("RGBA"))[..., :3][np.asarray(f.convert("RGBA"))[..., 3] >= 128] for f in frames]
    opaque = np.concatenate(pixels) if pixels else np.zeros((0, 3), np.uint8)
    if len(opaque) == 0:
        opaque = np.zeros((1, 3), np.uint8)
    strip = Image.fromarray(opaque.reshape(1, -1, 3), "RGB")
    return strip.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def apply_palette(frames: Sequence[Image.Image], palette: Image.Image) -> list[Image.Image]:
    """Every frame mapped to the shared palette (no dithering), alpha kept hard."""
    out = []
    for frame in frames:
        rgba = frame.convert("RGBA")
        mapped = rgba.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE).convert("RGB")
        alpha = rgba.getchannel("A").point(lambda a: 255 if a >= 128 else 0)
        mapped.putalpha(alpha)
        out.append(mapped)
    return out


def palette_colours(palette: Image.Image) -> np.ndarray:
    used = len(set(palette.getdata()))
    return np.array(palette.getpalette()[: 3 * max(used, 1)], dtype=np.uint8).reshape(-1, 3)


def add_outline(frames: Sequence[Image.Image], colour: tuple[int, int, int] | None = None) -> list[Image.Image]:
    """A 1 px outline (4-neighbourhood) around each frame's opaque pixels, in `colour` (default: the
    darkest colour already in the frames)."""
    if colour is None:
        darkest = min((tuple(p[:3]) for f in frames for p in f.convert("RGBA").getdata() if p[3] >= 128),
                      key=sum, default=(0, 0, 0))
        colour = darkest
    kernel = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    out = []
    for frame in frames:
        rgba = np.asarray(frame.convert("RGBA")).copy()
        solid = (rgba[..., 3] >= 128).astype(np.uint8)
        ring = (cv2.dilate(solid, kernel) > 0) & (solid == 0)
        rgba[ring] = (*colour, 255)
        out.append(Image.fromarray(rgba, "RGBA"))
    return out
