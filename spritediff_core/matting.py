"""Transparency for generated frames: the model draws the character on black, as in its training data.

`matte_frame` turns such a frame into RGBA:
1. Background = near-black pixels connected to the frame's border (the noise floor is measured on the
   border), so dark parts inside the character (hair, clothes, eyes) stay opaque.
2. Outlines: pixel-art characters often have black outlines that touch the background and are
   indistinguishable from it by colour. The reference picture's own alpha tells whether the character has
   such an outline and how thick it is (`OutlineHint`); that band is restored around the silhouette.
3. Soft edges without a black fringe: an edge pixel is its inner neighbour's colour premultiplied by alpha
   over black, so alpha = brightness / inner brightness and the colour is the inner colour. Restored
   outline bands get a one-pixel geometric falloff instead.

`rembg`, when the user has installed it and its model is already downloaded, can be used instead
(`mode="rembg"`); nothing is ever downloaded at run time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .errors import InvalidInputError

MODES = ("auto", "none", "rembg")
OUTLINE_DARKNESS = 48  # max channel value a reference edge pixel may have to count as outline
MIN_BACKGROUND_LEVEL = 10


@dataclass(frozen=True)
class OutlineHint:
    """A dark outline band of the reference picture: thickness as a fraction of the picture's height."""

    thickness: float = 0.0
    darkness: float = 0.0  # the band's median brightness (max channel, 0..255)

    @classmethod
    def from_reference(cls, reference: Image.Image | None) -> "OutlineHint":
        """Measure the dark band just inside the reference's alpha edge (none without an alpha channel)."""
        if reference is None or "A" not in reference.getbands():
            return cls()
        rgba = np.asarray(reference.convert("RGBA"))
        inside = (rgba[..., 3] > 127).astype(np.uint8)
        if inside.sum() < 16:
            return cls()
        depth = cv2.distanceTransform(np.pad(inside, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        value = rgba[..., :3].max(axis=-1)
        rings, levels = 0, []
        for ring in range(1, 16):
            band = (depth > ring - 1) & (depth <= ring) & (inside > 0)
            if band.sum() < 8:
                break
            level = float(np.median(value[band]))
            if level > OUTLINE_DARKNESS:
                break
            rings, levels = ring, levels + [level]
        if rings == 0:
            return cls()
        return cls(thickness=rings / reference.height, darkness=float(np.median(levels)))


def _background_level(value: np.ndarray) -> float:
    """The noise floor of the black background, measured on the frame's border."""
    border = np.concatenate([value[0], value[-1], value[:, 0], value[:, -1]])
    return float(min(max(MIN_BACKGROUND_LEVEL, np.percentile(border, 99) + 6), 60))


def _border_connected(mask: np.ndarray) -> np.ndarray:
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge_labels = edge_labels[edge_labels > 0]
    return np.isin(labels, edge_labels) & mask


def _nearest_inner_colour(rgb: np.ndarray, solid: np.ndarray) -> np.ndarray:
    """For every pixel, the colour of the nearest solid pixel (so edges take their inner colour)."""
    if not solid.any():
        return rgb.astype(np.float32)
    _, labels = cv2.distanceTransformWithLabels((~solid).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(solid)
    # Labels number the zero (solid) pixels in row-major scan order, starting at 1.
    order = np.argsort(ys * solid.shape[1] + xs)
    lookup = np.zeros((labels.max() + 1, 3), dtype=np.float32)
    lookup[1:len(order) + 1] = rgb[ys[order], xs[order]]
    return lookup[labels]


def matte_frame(frame: Image.Image, hint: OutlineHint = OutlineHint(), mode: str = "auto") -> Image.Image:
    """An RGBA version of a frame generated on black (see the module notes)."""
    if mode not in MODES:
        raise InvalidInputError(f"alpha mode must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return frame.convert("RGBA")
    if mode == "rembg":
        return _rembg(frame)
    if frame.mode == "RGBA" and int(np.asarray(frame.getchannel("A")).min()) < 255:
        return frame.copy()  # the frame's own transparency is better than any guess from the colours
    rgb = np.asarray(frame.convert("RGB")).astype(np.float32)
    value = rgb.max(axis=-1)
    level = _background_level(value)
    background = _border_connected(value <= level)
    silhouette = ~background
    alpha = silhouette.astype(np.float32)

    thickness = int(round(hint.thickness * frame.height))
    if thickness > 0 and hint.darkness <= level + 8:
        # The outline vanished into the background: give it back, as thick as the reference's.
        outside = cv2.distanceTransform(np.pad(background.astype(np.uint8), 1, constant_values=1), cv2.DIST_L2,
                                        5)[1:-1, 1:-1]
        ring = background & (outside <= thickness + 0.5)
        alpha = np.maximum(alpha, np.clip(thickness + 0.5 - outside, 0, 1) * ring)
        alpha[ring & (outside <= thickness - 0.5)] = 1.0
        solid = silhouette | (ring & (outside <= thickness - 0.5))
        colour = _nearest_inner_colour(rgb, solid)
        colour[ring] = rgb[ring]  # the outline's own (dark) colour
    else:
        inner = cv2.erode(silhouette.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        colour = _nearest_inner_colour(rgb, inner if inner.any() else silhouette)
        edge = silhouette & ~inner
        spill = background & cv2.dilate(silhouette.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        soft = edge | spill
        brightness = np.maximum(colour.max(axis=-1), 1.0)
        outlined = hint.thickness > 0
        if outlined:
            # An outline thinner than a pixel here (or one lighter than the background) is what the edge
            # pixels are made of, so their coverage is measured against the outline's brightness, not the
            # inside's; otherwise a dark-outlined character loses its whole rim.
            brightness = np.minimum(brightness, max(hint.darkness, 2 * level))
        alpha[soft] = np.clip((value[soft] - level * spill[soft]) / brightness[soft], 0, 1)
        alpha[spill & (alpha < 0.1)] = 0.0
        if outlined:
            rim = edge & (alpha > 0)
            colour[rim] = np.clip(rgb[rim] / alpha[rim, None], 0, 255)  # the outline's own colour, unmixed
    out = np.where(alpha[..., None] < 1, colour, rgb)
    rgba = np.dstack([out, alpha * 255]).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def _rembg(frame: Image.Image) -> Image.Image:
    """rembg's matting, only if installed and its model is already on disk (no download at run time)."""
    try:
        import rembg
    except ImportError:
        raise InvalidInputError("alpha mode 'rembg' needs the rembg package: pip install rembg") from None
    home = Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net"))
    if not (home / "u2net.onnx").is_file():
        raise InvalidInputError(f"rembg's model is not downloaded ({home / 'u2net.onnx'}); spritediff never "
                                "downloads at run time: run rembg once yourself, or use --alpha auto")
    return rembg.remove(frame.convert("RGB"), session=rembg.new_session("u2net")).convert("RGBA")


def alpha_iou(expected: np.ndarray, found: np.ndarray) -> float:
    """Soft intersection over union of two alpha maps in [0, 1]."""
    return float(np.minimum(expected, found).sum() / max(np.maximum(expected, found).sum(), 1e-9))
