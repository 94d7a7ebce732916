"""Pose images drawn exactly as DWPose draws them (the drawing the weights were trained on).

Rules (from the reference images in tests/fixtures/dwpose-draw): 17 limbs as filled rotated ellipses
(half-length x stick width) in the OpenPose colours, the whole canvas then dimmed to 60% with uint8
truncation, then 18 joints as filled circles at full colour; hand edges as lines coloured round the hue
wheel with blue joint dots; face points as white dots. Pixel positions are truncated to int. Hand and face
points on pixel row or column 0 are not drawn (DWPose's `x > eps` test on truncated pixels).

Stroke sizes: the weights saw 4 px sticks on images of about 512 px. `stroke_scale=1.0` draws exactly
DWPose's sizes at any canvas size (what the golden images hold). `stroke_scale="auto"` scales every stroke by
the canvas's shorter side / 512, so a 256 px drawing looks like a 512 px one resized (2 px sticks) and a
1024 px one gets 8 px sticks; at 512 px it is identical to DWPose. Sizes are rounded and never below 1 px.
"""

from __future__ import annotations

import colorsys
import math
from typing import Union

import cv2
import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .poses import PoseFrame, PoseSequence

REFERENCE_SIDE = 512
STICK_WIDTH = 4
JOINT_RADIUS = 4
HAND_LINE_WIDTH = 2
HAND_POINT_RADIUS = 4
FACE_POINT_RADIUS = 3

# OpenPose limbs as 1-based keypoint pairs; DWPose draws the first 17 (the last two, ear-shoulder, never).
LIMBS = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13),
         (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18))
BODY_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
                (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
HAND_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
              (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20))
HAND_COLOURS = tuple(tuple(c * 255 for c in colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0))
                     for i in range(len(HAND_EDGES)))
HAND_POINT_COLOUR = (0, 0, 255)
FACE_POINT_COLOUR = (255, 255, 255)

StrokeScale = Union[float, str]


def stroke_scale_for(width: int, height: int) -> float:
    """The `auto` stroke scale: the canvas's shorter side relative to the 512 px the weights saw."""
    return min(width, height) / REFERENCE_SIDE


def _size(base: int, scale: float) -> int:
    return base if scale == 1.0 else max(1, int(round(base * scale)))


def _resolve_scale(stroke_scale: StrokeScale, width: int, height: int) -> float:
    if stroke_scale == "auto":
        return stroke_scale_for(width, height)
    value = float(stroke_scale)
    if value <= 0:
        raise ValueError(f"stroke_scale must be positive or 'auto', got {stroke_scale!r}")
    return value


def draw_body(canvas: np.ndarray, body: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Limbs, the 60% dim, then joints, as DWPose's draw_bodypose; returns the new canvas."""
    visible = body[:, 2] > 0
    stick = _size(STICK_WIDTH, scale)
    for colour, (first, second) in zip(BODY_COLOURS, LIMBS):
        a, b = first - 1, second - 1
        if not (visible[a] and visible[b]):
            continue
        xs, ys = body[[a, b], 0], body[[a, b], 1]
        length = ((ys[0] - ys[1]) ** 2 + (xs[0] - xs[1]) ** 2) ** 0.5  # DWPose's formula, to the last bit
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        polygon = cv2.ellipse2Poly((int(np.mean(xs)), int(np.mean(ys))), (int(length / 2), stick), int(angle),
                                   0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, colour)
    canvas = (canvas * 0.6).astype(np.uint8)
    radius = _size(JOINT_RADIUS, scale)
    for colour, (x, y, confidence) in zip(BODY_COLOURS, body):
        if confidence > 0:
            cv2.circle(canvas, (int(x), int(y)), radius, colour, thickness=-1)
    return canvas


def _drawable(x: float, y: float, confidence: float) -> tuple[int, int] | None:
    px, py = int(x), int(y)
    return (px, py) if confidence > 0 and px > 0 and py > 0 else None


def draw_hand(canvas: np.ndarray, hand: np.ndarray, scale: float = 1.0) -> None:
    points = [_drawable(*point) for point in hand]
    width = _size(HAND_LINE_WIDTH, scale)
    for colour, (a, b) in zip(HAND_COLOURS, HAND_EDGES):
        if points[a] is not None and points[b] is not None:
            cv2.line(canvas, points[a], points[b], colour, thickness=width)
    radius = _size(HAND_POINT_RADIUS, scale)
    for point in points:
        if point is not None:
            cv2.circle(canvas, point, radius, HAND_POINT_COLOUR, thickness=-1)


def draw_face(canvas: np.ndarray, face: np.ndarray, scale: float = 1.0) -> None:
    radius = _size(FACE_POINT_RADIUS, scale)
    for point in face:
        drawable = _drawable(*point)
        if drawable is not None:
            cv2.circle(canvas, drawable, radius, FACE_POINT_COLOUR, thickness=-1)


def draw_pose_array(frame: PoseFrame, width: int | None = None, height: int | None = None,
                    stroke_scale: StrokeScale = 1.0, hands: bool = True, face: bool = True) -> np.ndarray:
    """An (H, W, 3) uint8 RGB pose image: body, then left and right hand, then face, on black."""
    width = frame.canvas_width if width is None else int(width)
    height = frame.canvas_height if height is None else int(height)
    frame = frame.scaled_to(width, height)
    scale = _resolve_scale(stroke_scale, width, height)
    canvas = draw_body(np.zeros((height, width, 3), dtype=np.uint8), frame.body, scale)
    if hands:
        for hand in (frame.left_hand, frame.right_hand):
            if hand is not None:
                draw_hand(canvas, hand, scale)
    if face and frame.face is not None:
        draw_face(canvas, frame.face, scale)
    return canvas


def draw_pose(frame: PoseFrame, width: int | None = None, height: int | None = None,
              stroke_scale: StrokeScale = 1.0, hands: bool = True, face: bool = True) -> Image.Image:
    """The pose image as a PIL RGB image (see `draw_pose_array`)."""
    return Image.fromarray(draw_pose_array(frame, width, height, stroke_scale, hands, face), "RGB")


MAX_CANVAS_SIDE = 8192  # pose pictures for a model that works at 64-1024 px


def check_canvas_size(width: int, height: int) -> None:
    """Refuse pose canvases no generation could use, before drawing (30000 x 30000 would need 2.7 GB per
    picture)."""
    if not (1 <= width <= MAX_CANVAS_SIDE and 1 <= height <= MAX_CANVAS_SIDE):
        megabytes = width * height * 3 / 2**20
        raise InvalidInputError(f"a {width}x{height} pose canvas is outside 1..{MAX_CANVAS_SIDE} px per side "
                                f"(it would take {megabytes:,.0f} MB per picture); choose a smaller size")


def pose_image_names(count: int) -> list[str]:
    return [f"pose_{index:04d}.png" for index in range(count)]


def write_pose_sequence(sequence: PoseSequence, directory, width: int | None = None, height: int | None = None,
                        stroke_scale: StrokeScale = "auto", inputs=(), keep_other_files: bool = False) -> list[str]:
    """`poses.json` (OpenPose JSON) and one pose PNG per frame into `directory`, all or nothing (beside other
    files there only with `keep_other_files`)."""
    from .staged_writes import MANIFEST, staged_directory, write_json

    check_canvas_size(width or sequence.canvas_size[0], height or width or sequence.canvas_size[1])
    frames = sequence.frames if width is None else [f.scaled_to(width, height or width) for f in sequence.frames]
    sequence = sequence.with_frames(frames)
    names = pose_image_names(len(frames))
    with staged_directory(directory, inputs, keep_other_files=keep_other_files, kind="poses") as staging:
        sequence.save(staging / "poses.json")
        for frame, name in zip(frames, names):
            draw_pose(frame, stroke_scale=stroke_scale).save(staging / name)
        write_json(staging / MANIFEST, {"files": ["poses.json", *names], "name": sequence.name,
                                        "fps": sequence.fps, "loop": sequence.loop,
                                        "stroke_scale": stroke_scale})
    return names
