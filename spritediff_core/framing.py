"""From camera-projected keypoints to pose frames on the generation canvas, with one steady framing.

Input per frame: keypoints in the camera's normalised view (x, y in 0..1 from the bottom-left of the camera
frame, and depth), as Blender's `world_to_camera_view` gives them. Points behind the camera or outside its
frame are not visible.

Auto-framing picks ONE uniform scale and offset for a whole animation (or several animations of one
character): the union of every frame's visible points fits the canvas with a margin, and the lowest point of
that union sits on a fixed ground line, so the character never jumps in scale or position between frames and
a jump really leaves the ground. Without auto-framing, the camera frame is fitted into the canvas as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import InvalidInputError
from .poses import BODY_POINTS, HAND_POINTS, PoseFrame


@dataclass(frozen=True)
class CameraPoints:
    """One frame's keypoints as seen by the camera: (K, 3) of [x, y, depth] and a (K,) found mask."""

    view: np.ndarray
    found: np.ndarray

    @property
    def visible(self) -> np.ndarray:
        x, y, depth = self.view[:, 0], self.view[:, 1], self.view[:, 2]
        return self.found & (depth > 0) & (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)


@dataclass(frozen=True)
class Framing:
    """canvas_px = scale * (x * aspect, 1 - y) + offset, the same for every frame."""

    width: int
    height: int
    aspect: float  # camera frame width / height, pixel aspect included
    scale: float
    offset_x: float
    offset_y: float

    def to_canvas(self, view: np.ndarray) -> np.ndarray:
        u = view[:, 0] * self.aspect
        v = 1.0 - view[:, 1]
        return np.stack([self.scale * u + self.offset_x, self.scale * v + self.offset_y], axis=1)


def camera_framing(aspect: float, width: int, height: int) -> Framing:
    """The camera frame fitted (letterboxed, centred) into the canvas."""
    scale = min(width / aspect, height)
    return Framing(width, height, aspect, scale, (width - scale * aspect) / 2, (height - scale) / 2)


# Keypoints stop at the eyes and ears: the skull, hair and hats rise above them. Keep this many head lengths
# (neck to nose, as the camera sees it) free above the highest keypoint, so framing never cuts a head off.
HEAD_ROOM = 1.2


def head_room(animations: Sequence[Sequence[CameraPoints]], aspect: float) -> float:
    """Room to keep above the highest keypoint, in the camera's normalised units (0 if no head is seen)."""
    lengths = []
    for animation in animations:
        for frame in animation:
            if len(frame.view) > 1 and frame.visible[0] and frame.visible[1]:
                du, dv = (frame.view[0, :2] - frame.view[1, :2]) * (aspect, 1.0)
                lengths.append(float(np.hypot(du, dv)))
    return HEAD_ROOM * float(np.median(lengths)) if lengths else 0.0


def auto_framing(animations: Sequence[Sequence[CameraPoints]], aspect: float, width: int, height: int,
                 margin: float = 0.08, ground: float = 0.92) -> Framing:
    """One framing holding every visible point of every frame of every given animation, with room for the
    head above the highest one (`HEAD_ROOM`)."""
    if not 0 <= margin < 0.5 or not margin < ground <= 1:
        raise InvalidInputError(f"bad framing: margin {margin}, ground line {ground}")
    visible = [frame.view[frame.visible, :2] for animation in animations for frame in animation]
    points = np.concatenate(visible) if visible else np.zeros((0, 2))
    if len(points) == 0:
        raise InvalidInputError("no keypoint is visible to the camera in any frame: check the camera and armature")
    u = points[:, 0] * aspect
    v = 1.0 - points[:, 1]
    top = v.min() - head_room(animations, aspect)
    span_u, span_v = max(u.max() - u.min(), 1e-6), max(v.max() - top, 1e-6)
    scale = min(width * (1 - 2 * margin) / span_u, height * (ground - margin) / span_v)
    offset_x = width / 2 - scale * (u.min() + u.max()) / 2
    offset_y = height * ground - scale * v.max()
    return Framing(width, height, aspect, scale, offset_x, offset_y)


def to_pose_frame(points: CameraPoints, framing: Framing, with_hands: bool) -> PoseFrame:
    """Canvas keypoints of one frame: body first (18), then left and right hands (21 each) if mapped."""
    xy = framing.to_canvas(points.view)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < framing.width) & (xy[:, 1] >= 0) & (xy[:, 1] < framing.height)
    confidence = (points.visible & inside).astype(float)
    keypoints = np.concatenate([np.where(confidence[:, None] > 0, xy, 0.0), confidence[:, None]], axis=1)
    body = keypoints[:BODY_POINTS]
    hands = {}
    if with_hands:
        start = BODY_POINTS
        hands = {"left_hand": keypoints[start:start + HAND_POINTS],
                 "right_hand": keypoints[start + HAND_POINTS:start + 2 * HAND_POINTS]}
    return PoseFrame(body, framing.width, framing.height, **hands)
