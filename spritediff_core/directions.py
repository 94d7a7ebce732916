"""Directions: one animation seen from 4 or 8 camera positions around the character, named as engines name them.

Names follow the compass convention of top-down and isometric games: the direction the character FACES on
screen, `s` towards the viewer (down the screen), `e` to screen right, `n` away, `w` to screen left, and the
diagonals between them, clockwise on screen: s, se, e, ne, n, nw, w, sw. The camera stays where the user put it
(distance, height, lens); the character is turned about the vertical axis through its root instead, which is
the same picture as the camera orbiting it. Left and right stay right in every view: they come from the
bones, so a turned character shows its right arm wherever that arm really is.

Only numpy: the add-on gives the camera's and the armature's world axes, this module does the angles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError

COMPASS = ("s", "se", "e", "ne", "n", "nw", "w", "sw")
COMPASS_ANGLES = {name: 45.0 * index for index, name in enumerate(COMPASS)}  # clockwise on screen from s
DIRECTION_COUNTS = (1, 4, 8)
# Horizontal mirror images of each other: a sprite facing e, flipped, faces w.
MIRRORED = {"e": "w", "w": "e", "ne": "nw", "nw": "ne", "se": "sw", "sw": "se"}


def direction_names(count: int) -> tuple[str, ...]:
    """The directions of a 4- or 8-direction set, in compass order; () for 1 (the camera's own view)."""
    if count not in DIRECTION_COUNTS:
        raise InvalidInputError(f"directions must be 1, 4 or 8, got {count!r}")
    return () if count == 1 else COMPASS[::8 // count]


def check_direction(name: str) -> str:
    if name not in COMPASS:
        raise InvalidInputError(f"unknown direction {name!r}: use one of {', '.join(COMPASS)}")
    return name


def animation_name(action: str, direction: str | None) -> str:
    """The name of one direction of an Action: `walk_se` (its frames `walk_se_0003`); the Action's own name
    without directions."""
    return f"{action}_{direction}" if direction else action


def angular_distance(a: float, b: float) -> float:
    """Degrees between two angles, 0 to 180."""
    difference = abs(a - b) % 360.0
    return min(difference, 360.0 - difference)


def nearest_by_angle(angle: float, angles: dict[str, float], available) -> str | None:
    """Of the names in `angles` that are also `available`, the one whose angle is nearest `angle`; ties go to
    the earlier one in `angles`' order. None when none is available."""
    candidates = [name for name in angles if name in available]
    if not candidates:
        return None
    return min(candidates, key=lambda name: angular_distance(angle, angles[name]))


def nearest_direction(direction: str, available) -> str:
    """Of the `available` directions (e.g. those with a reference picture), the one nearest `direction`;
    ties go to the earlier one in compass order."""
    nearest = nearest_by_angle(COMPASS_ANGLES[direction], COMPASS_ANGLES, available)
    if nearest is None:
        raise InvalidInputError("no direction to choose from")
    return nearest


def parse_mirrors(text: str | None, directions: tuple[str, ...]) -> dict[str, str]:
    """`--mirror e:w,ne:nw`: {mirrored direction: generated direction it is flipped from}. Each pair must be
    mirror images (e:w, ne:nw, se:sw, either way round), both in the direction set, and a source is generated,
    never itself mirrored."""
    mirrors: dict[str, str] = {}
    if not text or not text.strip():
        return mirrors
    if not directions:
        raise InvalidInputError("--mirror needs --directions 4 or 8")
    for part in text.split(","):
        source, colon, target = part.strip().partition(":")
        if not colon:
            raise InvalidInputError(f"--mirror takes SOURCE:TARGET pairs such as e:w, got {part.strip()!r}")
        source, target = check_direction(source.strip()), check_direction(target.strip())
        if MIRRORED.get(source) != target:
            raise InvalidInputError(f"--mirror {source}:{target}: {target} is not the mirror image of {source} "
                                    "(pairs: e:w, ne:nw, se:sw, either way round)")
        for name in (source, target):
            if name not in directions:
                raise InvalidInputError(f"--mirror {source}:{target}: {name} is not one of the "
                                        f"{len(directions)} directions ({', '.join(directions)})")
        if target in mirrors:
            raise InvalidInputError(f"--mirror names {target} twice")
        mirrors[target] = source
    both = sorted(set(mirrors) & set(mirrors.values()))
    if both:
        raise InvalidInputError(f"--mirror: {', '.join(both)} would be both mirrored and mirrored from")
    return mirrors


# ---------------------------------------------------------------- turning the character for the camera
def _ground(vector) -> np.ndarray:
    """The vector's part along the ground (its vertical part dropped), not normalised."""
    return np.array([vector[0], vector[1], 0.0], dtype=float)


def _unit_on_ground(vector) -> np.ndarray:
    """The direction of the vector's ground part; zero when it has (almost) none."""
    flat = _ground(vector)
    length = float(np.linalg.norm(flat))
    return flat / length if length > 1e-6 else np.zeros(3)


@dataclass(frozen=True)
class CameraAxes:
    """A camera's world axes: `right` (+X), `up` (+Y) and `back` (+Z, from the scene towards the camera)."""

    right: np.ndarray
    up: np.ndarray
    back: np.ndarray

    @classmethod
    def from_matrix(cls, matrix_world) -> "CameraAxes":
        rotation = np.asarray(matrix_world, dtype=float)[:3, :3]
        columns = [rotation[:, index] / max(float(np.linalg.norm(rotation[:, index])), 1e-12) for index in range(3)]
        return cls(*columns)

    def screen_ground_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """(towards the viewer, screen right) as directions on the ground: the compass's s and e. From a side
        camera to a top-down one: the camera's back axis and its down axis both lean towards the viewer."""
        south = _unit_on_ground(_ground(self.back) - _ground(self.up))
        east = _unit_on_ground(self.right)
        if not south.any() or not east.any():
            raise InvalidInputError("the camera looks along the ground's vertical in a way that leaves no "
                                    "screen direction on the ground: tilt it")
        return south, east


def facing_angle(forward, camera: CameraAxes) -> float:
    """The compass angle (degrees, 0 = s, 90 = e) of a character facing `forward` (a world vector) on screen."""
    south, east = camera.screen_ground_axes()
    facing = _unit_on_ground(forward)
    if not facing.any():
        raise InvalidInputError("the character's forward axis is vertical: it has no facing on the ground")
    return math.degrees(math.atan2(float(facing @ east), float(facing @ south))) % 360.0


def turn_about_vertical(degrees: float, pivot) -> np.ndarray:
    """4x4 world transform turning points by `degrees` (counter-clockwise seen from above) about the vertical
    axis through `pivot`."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    pivot = np.asarray(pivot, dtype=float)[:3]
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = pivot - rotation @ pivot
    return transform


def direction_turns(directions: tuple[str, ...], forward, camera: CameraAxes, pivot) -> dict[str, np.ndarray]:
    """For each direction, the world transform that turns the character about its root so it faces that
    way on screen (seen through the unmoved camera)."""
    south, east = camera.screen_ground_axes()
    # Turning counter-clockwise (seen from above) raises the compass angle when e lies counter-clockwise of s.
    sign = 1.0 if float(np.cross(south, east)[2]) > 0 else -1.0
    current = facing_angle(forward, camera)
    return {name: turn_about_vertical(sign * (COMPASS_ANGLES[name] - current), pivot) for name in directions}


__all__ = [
    "COMPASS", "COMPASS_ANGLES", "DIRECTION_COUNTS", "MIRRORED", "CameraAxes", "animation_name",
    "check_direction", "direction_names", "direction_turns", "facing_angle", "nearest_by_angle", "nearest_direction",
    "parse_mirrors",
    "turn_about_vertical",
]
