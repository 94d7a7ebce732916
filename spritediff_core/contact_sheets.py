"""Contact sheets: rows of labelled frames in one image, for looking at a whole set of animations at once."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from PIL import Image


def contact_sheet(rows: Sequence[tuple[str, Sequence[Image.Image]]], cell: int = 192,
                  label_width: int = 110, gap: int = 4) -> Image.Image:
    """One row per (label, frames); frames are fitted into square cells, rows as long as the longest."""
    columns = max(len(frames) for _, frames in rows)
    width = label_width + columns * (cell + gap)
    height = len(rows) * (cell + gap)
    canvas = np.full((height, width, 3), 24, dtype=np.uint8)
    for row, (label, frames) in enumerate(rows):
        top = row * (cell + gap)
        cv2.putText(canvas, label, (8, top + cell // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (230, 230, 230), 1,
                    cv2.LINE_AA)
        for column, frame in enumerate(frames):
            image = frame.convert("RGB")
            image.thumbnail((cell, cell), Image.Resampling.LANCZOS)
            left = label_width + column * (cell + gap)
            y, x = top + (cell - image.height) // 2, left + (cell - image.width) // 2
            canvas[y:y + image.height, x:x + image.width] = np.asarray(image)
    return Image.fromarray(canvas, "RGB")
