"""Image steps of the training-data renderer (`python -m blender_addon dataset`): outlines on rendered sprite
frames, and how well a frame's keypoints sit on its silhouette. No bpy: the add-on renders, this finishes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .pixelart import add_outline
from .poses import PoseFrame

# Eyes, ears and nose lie on the head's surface, not inside it: a check may leave them out.
FACE_BODY_POINTS = (0, 14, 15, 16, 17)


def outline_files(paths: Sequence[str | Path], colour: tuple[int, int, int]) -> None:
    """Give each RGBA PNG a 1 px outline of `colour` around its opaque pixels, in place."""
    for path in paths:
        with Image.open(path) as image:
            framed = add_outline([image.convert("RGBA")], colour)[0]
        framed.save(path)


def keypoints_on_silhouette(image: Image.Image, frame: PoseFrame, radius: int = 2, threshold: float = 0.5,
                            skip: Sequence[int] = FACE_BODY_POINTS) -> tuple[int, int]:
    """(points on the silhouette, points checked): a visible body point counts when some pixel within
    `radius` px of it has alpha above `threshold`."""
    alpha = np.asarray(image.convert("RGBA"))[..., 3].astype(np.float32) / 255
    height, width = alpha.shape
    hits = checked = 0
    for index, (x, y, confidence) in enumerate(frame.scaled_to(width, height).body):
        if confidence <= 0 or index in skip:
            continue
        checked += 1
        column, row = int(x), int(y)
        window = alpha[max(row - radius, 0):row + radius + 1, max(column - radius, 0):column + radius + 1]
        hits += bool(window.size and window.max() > threshold)
    return hits, checked
