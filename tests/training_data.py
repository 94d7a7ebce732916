"""A tiny dataset in the layout `python -m blender_addon dataset` writes, drawn without Blender: stick figures
whose limbs are thick coloured bars along OpenPose keypoints (for training and evaluation tests)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from spritediff_core.drawing import write_pose_sequence
from spritediff_core.poses import PoseFrame, PoseSequence

# A standing figure on a 1x1 canvas (x right, y down), COCO-18 order.
STANDING = np.array([
    [0.50, 0.20], [0.50, 0.30], [0.40, 0.30], [0.38, 0.45], [0.37, 0.58], [0.60, 0.30], [0.62, 0.45],
    [0.63, 0.58], [0.45, 0.58], [0.45, 0.75], [0.45, 0.92], [0.55, 0.58], [0.55, 0.75], [0.55, 0.92],
    [0.48, 0.18], [0.52, 0.18], [0.46, 0.19], [0.54, 0.19],
])
LIMBS = [(1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13)]


def figure(points: np.ndarray, size: int, colours: list[tuple[int, int, int]]) -> Image.Image:
    canvas = np.zeros((size, size, 4), np.uint8)
    thickness = max(2, size // 12)
    for index, (a, b) in enumerate(LIMBS):
        colour = (*colours[index % len(colours)], 255)
        cv2.line(canvas, tuple(int(v) for v in points[a]), tuple(int(v) for v in points[b]), colour, thickness)
    cv2.circle(canvas, tuple(int(v) for v in points[0]), max(3, size // 9), (*colours[-1], 255), -1)
    return Image.fromarray(canvas, "RGBA")


def write_tiny_dataset(root: Path, characters: int = 2, clips: int = 2, frames: int = 3, size: int = 32,
                       seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    names = []
    for c in range(characters):
        name = f"char_{c:04d}"
        names.append(name)
        folder = root / name
        (folder / "reference").mkdir(parents=True)
        colours = [tuple(int(v) for v in rng.integers(60, 256, 3)) for _ in range(4)]
        for view in ("front", "three_quarter", "side"):
            figure(STANDING * size, size, colours).save(folder / "reference" / f"{view}.png")
        clip_names = []
        for k in range(clips):
            clip_name = f"{k:03d}_walk_side"
            clip_names.append(clip_name)
            clip_dir = folder / "clips" / clip_name
            pose_frames = []
            for f in range(frames):
                points = STANDING.copy()
                swing = 0.08 * np.sin(2 * np.pi * f / frames + k)
                points[[3, 4, 9, 10], 0] += swing
                points[[6, 7, 12, 13], 0] -= swing
                pixels = points * size
                pose_frames.append(PoseFrame(np.column_stack([pixels, np.ones(18)]), size, size))
            sequence = PoseSequence(pose_frames, name="walk", fps=8, loop=True)
            write_pose_sequence(sequence, clip_dir)
            for f, frame in enumerate(pose_frames):
                figure(frame.body[:, :2], size, colours).save(clip_dir / f"frame_{f:04d}.png")
            view = {"name": "side", "azimuth_deg": 90.0, "projection": "ORTHO"}
            (clip_dir / "clip.json").write_text(json.dumps({"motion": "walk", "preset": "walk", "variation": {},
                                                            "view": view, "fps": 8, "loop": True,
                                                            "frames": frames}))
        references = {v: f"reference/{v}.png" for v in ("front", "three_quarter", "side")}
        (folder / "character.json").write_text(json.dumps({"name": name, "seed": seed, "recipe": {},
                                                           "references": references, "clips": clip_names}))
    (root / "dataset.json").write_text(json.dumps({"format": "spritediff-dataset", "version": 1, "size": [size, size],
                                                   "seed": seed, "source": "synthetic", "characters": names}))
    return root
