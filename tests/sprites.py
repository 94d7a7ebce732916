"""Synthetic sprites with known alpha, for the transparency and atlas tests."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

SUPERSAMPLE = 4


def sprite(seed: int, size: int = 256, outline: int = 0, outline_colour=(0, 0, 0), dark_details: bool = True,
           shift: tuple[int, int] = (0, 0), scale: float = 1.0) -> Image.Image:
    """An RGBA character-like blob with anti-aliased edges; `outline` px of dark outline outside it; dark
    details inside (hair, a belt) that must stay opaque."""
    rng = np.random.default_rng(seed)
    big = size * SUPERSAMPLE
    canvas = np.zeros((big, big, 4), np.uint8)
    cx, cy = big // 2 + shift[0] * SUPERSAMPLE, big // 2 + shift[1] * SUPERSAMPLE
    angles = np.linspace(0, 2 * np.pi, 9, endpoint=False)
    radii = rng.uniform(0.22, 0.36, len(angles)) * big * scale
    points = np.stack([cx + radii * np.cos(angles), cy + 1.2 * radii * np.sin(angles)], 1).astype(np.int32)
    colour = tuple(int(c) for c in rng.integers(80, 255, 3))
    if outline:
        cv2.polylines(canvas, [points], True, (*outline_colour, 255), thickness=2 * outline * SUPERSAMPLE)
    cv2.fillPoly(canvas, [points], (*colour, 255))
    if dark_details:
        cv2.circle(canvas, (cx, cy - big // 7), int(big * scale) // 14, (38, 26, 30, 255), -1)
        cv2.rectangle(canvas, (cx - big // 9, cy + big // 12), (cx + big // 9, cy + big // 9), (24, 24, 44, 255), -1)
    small = cv2.resize(canvas.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    alpha = small[..., 3:4] / 255
    rgb = np.where(alpha > 0, small[..., :3] / np.maximum(alpha, 1e-6), 0)
    return Image.fromarray(np.dstack([rgb, alpha[..., 0] * 255]).round().clip(0, 255).astype(np.uint8), "RGBA")


def on_black(image: Image.Image, noise: float = 3.0, seed: int = 0) -> Image.Image:
    """The sprite as the model would draw it: premultiplied over black, with a little noise."""
    rgba = np.asarray(image).astype(np.float32)
    rgb = rgba[..., :3] * rgba[..., 3:4] / 255
    rgb += np.random.default_rng(seed).normal(0, noise, rgb.shape)
    return Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8), "RGB")


def alpha_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image.getchannel("A")).astype(np.float32) / 255
