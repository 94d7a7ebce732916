"""Pose data: 18 OpenPose body keypoints (+ optional hands and face) per frame, in pixels of a canvas.

Stored as OpenPose JSON so poses move unchanged between Blender, the core and other tools (OpenPose
editors, ComfyUI). A frame is OpenPose's per-image JSON (`people[0].pose_keypoints_2d` as 18 x [x, y,
confidence], optional `hand_left_keypoints_2d`, `hand_right_keypoints_2d` (21 points each) and
`face_keypoints_2d` (68), plus `canvas_width` / `canvas_height`); a sequence file is
`{"name", "fps", "loop", "canvas_width", "canvas_height", "frames": [frame, ...]}`. A bare list of frames
(ComfyUI's POSE_KEYPOINT) and a single frame are read as sequences too. Confidence 0 means not visible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InvalidInputError

BODY_POINTS = 18
HAND_POINTS = 21
FACE_POINTS = 68
# OpenPose COCO-18 order.
BODY_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
# Hand points: wrist, then thumb, index, middle, ring, little finger, four points each (base to tip).
HAND_NAMES = ("wrist",) + tuple(f"{finger}_{i}" for finger in ("thumb", "index", "middle", "ring", "little")
                                for i in range(1, 5))


MAX_COORDINATE = 1e6  # pixels: far outside any canvas, far from float overflow in drawing


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or not 0 < value <= 65536:
        raise InvalidInputError(f"{what} must be a whole number of pixels from 1 to 65536, got {value!r}")
    return int(value)


def _points(value: Any, count: int, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what}: expected numbers [x, y, confidence, ...]") from None
    if array.size == count * 3 and array.ndim == 1:
        array = array.reshape(count, 3)
    if array.shape != (count, 3):
        raise InvalidInputError(f"{what}: expected {count} points of [x, y, confidence], got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.abs(array).max(initial=0) > MAX_COORDINATE:
        raise InvalidInputError(f"{what}: coordinates must be finite numbers within +-{MAX_COORDINATE:g} pixels")
    return array


@dataclass(frozen=True)
class PoseFrame:
    """Keypoints of one character in one frame, as (N, 3) arrays of [x, y, confidence] in canvas pixels."""

    body: np.ndarray
    canvas_width: int
    canvas_height: int
    left_hand: np.ndarray | None = None
    right_hand: np.ndarray | None = None
    face: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "body", _points(self.body, BODY_POINTS, "body"))
        for name, count in (("left_hand", HAND_POINTS), ("right_hand", HAND_POINTS), ("face", FACE_POINTS)):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _points(value, count, name))
        if int(self.canvas_width) <= 0 or int(self.canvas_height) <= 0:
            raise InvalidInputError(f"canvas size must be positive, got {self.canvas_width}x{self.canvas_height}")

    @property
    def visible(self) -> np.ndarray:
        return self.body[:, 2] > 0

    def scaled_to(self, width: int, height: int) -> "PoseFrame":
        """The same pose on a canvas of another size (coordinates scaled, confidences kept)."""
        if (width, height) == (self.canvas_width, self.canvas_height):
            return self
        factor = np.array([width / self.canvas_width, height / self.canvas_height, 1.0])

        def scale(points):
            return None if points is None else points * factor

        return PoseFrame(scale(self.body), width, height, scale(self.left_hand), scale(self.right_hand),
                         scale(self.face))

    def to_openpose(self) -> dict[str, Any]:
        person: dict[str, Any] = {"pose_keypoints_2d": _flat(self.body)}
        if self.left_hand is not None:
            person["hand_left_keypoints_2d"] = _flat(self.left_hand)
        if self.right_hand is not None:
            person["hand_right_keypoints_2d"] = _flat(self.right_hand)
        if self.face is not None:
            person["face_keypoints_2d"] = _flat(self.face)
        return {"version": 1.3, "people": [person], "canvas_width": int(self.canvas_width),
                "canvas_height": int(self.canvas_height)}

    @classmethod
    def from_openpose(cls, data: dict[str, Any], width: int | None = None, height: int | None = None,
                      where: str = "frame") -> "PoseFrame":
        if not isinstance(data, dict):
            raise InvalidInputError(f"{where}: expected an OpenPose JSON object")
        people = data.get("people") or []
        if not people or "pose_keypoints_2d" not in people[0]:
            raise InvalidInputError(f"{where}: no people[0].pose_keypoints_2d")
        person = people[0]
        width = data.get("canvas_width", width)
        height = data.get("canvas_height", height)
        if width is None or height is None:
            raise InvalidInputError(f"{where}: canvas_width/canvas_height missing")

        def optional(key, count):
            value = person.get(key)
            return None if not value else _points(value, count, f"{where}: {key}")

        return cls(
            _points(person["pose_keypoints_2d"], BODY_POINTS, f"{where}: pose_keypoints_2d"),
            _positive_int(width, f"{where}: canvas_width"), _positive_int(height, f"{where}: canvas_height"),
            optional("hand_left_keypoints_2d", HAND_POINTS),
            optional("hand_right_keypoints_2d", HAND_POINTS), optional("face_keypoints_2d", FACE_POINTS),
        )


def _flat(points: np.ndarray) -> list[float]:
    return [float(v) for v in points.reshape(-1)]


@dataclass(frozen=True)
class PoseSequence:
    """An animation's poses: frames plus name, playback rate and whether it cycles."""

    frames: tuple[PoseFrame, ...]
    name: str = "pose"
    fps: float = 8.0
    loop: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", tuple(self.frames))
        if not self.frames:
            raise InvalidInputError(f"pose sequence {self.name!r} has no frames")
        if self.fps <= 0:
            raise InvalidInputError(f"fps must be positive, got {self.fps}")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def canvas_size(self) -> tuple[int, int]:
        return self.frames[0].canvas_width, self.frames[0].canvas_height

    def with_frames(self, frames: Sequence[PoseFrame]) -> "PoseSequence":
        return replace(self, frames=tuple(frames))

    def to_json(self) -> dict[str, Any]:
        width, height = self.canvas_size
        data = {"name": self.name, "fps": self.fps, "loop": self.loop, "canvas_width": width,
                "canvas_height": height, "frames": [frame.to_openpose() for frame in self.frames]}
        if self.metadata:
            data["metadata"] = self.metadata
        return data

    @classmethod
    def from_json(cls, data: Any, name: str = "pose") -> "PoseSequence":
        if isinstance(data, list):  # ComfyUI POSE_KEYPOINT: a list of OpenPose frames
            data = {"frames": data}
        elif isinstance(data, dict) and "people" in data:  # a single OpenPose frame
            data = {"frames": [data]}
        if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
            raise InvalidInputError("not a pose sequence: expected OpenPose JSON frames")
        width, height = data.get("canvas_width"), data.get("canvas_height")
        frames = [PoseFrame.from_openpose(frame, width, height, where=f"frame {index}")
                  for index, frame in enumerate(data["frames"])]
        fps = data.get("fps", 8.0)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
            raise InvalidInputError(f"fps must be a number above 0 (at most 1000), got {fps!r}")
        return cls(frames, name=data.get("name", name), fps=float(fps),
                   loop=bool(data.get("loop", True)), metadata=dict(data.get("metadata", {})))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "PoseSequence":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidInputError(f"pose file {path} does not exist") from None
        except ValueError as error:
            raise InvalidInputError(f"pose file {path} is not valid JSON ({error})") from None
        try:
            return cls.from_json(data, name=path.stem)
        except InvalidInputError as error:
            raise InvalidInputError(f"{path}: {error}") from None
