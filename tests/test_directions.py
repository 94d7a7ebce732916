"""Directions (spritediff_core.directions): compass names, mirroring, nearest references, and the turn that
makes a character face each direction through an unmoved camera."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spritediff_core.directions import (
    COMPASS,
    CameraAxes,
    angular_distance,
    animation_name,
    direction_names,
    direction_turns,
    facing_angle,
    nearest_direction,
    parse_mirrors,
    turn_about_vertical,
)
from spritediff_core.errors import InvalidInputError


def camera_looking(direction, up=(0.0, 0.0, 1.0)) -> CameraAxes:
    """Axes of a camera looking along `direction` with `up` as near its up as possible."""
    back = -np.asarray(direction, dtype=float) / np.linalg.norm(direction)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    return CameraAxes(right, np.cross(back, right), back)


SIDE_CAMERA = camera_looking((1.0, 0.0, 0.0))  # the presets' camera: at the character's right (-X), looking +X
# The same camera as Blender gives it: float noise in the axes (an up axis a hair off the vertical).
NOISY_SIDE_CAMERA = CameraAxes(np.array([-4.4e-8, -1.0, 0.0]), np.array([-4.4e-8, 4.8e-15, 1.0]),
                               np.array([-1.0, 4.4e-8, -4.4e-8]))
FORWARD = np.array([0.0, -1.0, 0.0])  # the rig faces -Y


def test_direction_sets_and_names():
    assert direction_names(1) == ()
    assert direction_names(4) == ("s", "e", "n", "w")
    assert direction_names(8) == COMPASS == ("s", "se", "e", "ne", "n", "nw", "w", "sw")
    for bad in (0, 2, 3, 16):
        with pytest.raises(InvalidInputError, match="1, 4 or 8"):
            direction_names(bad)
    assert animation_name("walk", "se") == "walk_se" and animation_name("walk", None) == "walk"


def test_nearest_direction_prefers_the_closest_then_compass_order():
    assert nearest_direction("se", ("s", "e")) == "s"  # a tie: the earlier one
    assert nearest_direction("ne", ("s", "e", "n")) == "e"
    assert nearest_direction("w", ("s", "e")) == "s"
    assert nearest_direction("nw", ("n",)) == "n"


@pytest.mark.parametrize("text, expected", [
    ("e:w", {"w": "e"}), ("w:e", {"e": "w"}), ("e:w, ne:nw,se:sw", {"w": "e", "nw": "ne", "sw": "se"}), ("", {}),
])
def test_mirror_pairs(text, expected):
    assert parse_mirrors(text, COMPASS) == expected


@pytest.mark.parametrize("text, directions, message", [
    ("e:n", COMPASS, "not the mirror image"),
    ("s:s", COMPASS, "not the mirror image"),
    ("e-w", COMPASS, "SOURCE:TARGET"),
    ("ne:nw", ("s", "e", "n", "w"), "ne is not one of the 4 directions"),
    ("e:w,w:e", COMPASS, "both mirrored and mirrored from"),
    ("e:w,e:w", COMPASS, "names w twice"),
    ("x:w", COMPASS, "unknown direction 'x'"),
    ("e:w", (), "needs --directions 4 or 8"),
])
def test_bad_mirrors_are_refused(text, directions, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_mirrors(text, directions)


def test_facing_angles_on_screen():
    assert facing_angle(FORWARD, SIDE_CAMERA) == pytest.approx(90.0)  # faces screen right: e
    assert facing_angle(FORWARD, NOISY_SIDE_CAMERA) == pytest.approx(90.0)
    assert facing_angle((1.0, 0.0, 0.0), SIDE_CAMERA) == pytest.approx(180.0)  # away from the camera: n
    assert facing_angle((-1.0, 0.0, 0.0), SIDE_CAMERA) % 360 == pytest.approx(0.0, abs=1e-9)  # towards it: s
    front = camera_looking((0.0, 1.0, 0.0))  # in front of the character, looking +Y at its face
    assert facing_angle(FORWARD, front) % 360 == pytest.approx(0.0, abs=1e-9)
    top_down = camera_looking((0.0, 0.0, -1.0), up=(0.0, 1.0, 0.0))  # screen up is +Y
    assert facing_angle(FORWARD, top_down) % 360 == pytest.approx(0.0, abs=1e-9)  # walking down the screen: s
    elevated = camera_looking((1.0, 0.0, -1.0))  # isometric-style: looking down at 45 degrees
    assert facing_angle(FORWARD, elevated) == pytest.approx(90.0)
    with pytest.raises(InvalidInputError, match="vertical"):
        facing_angle((0.0, 0.0, 1.0), SIDE_CAMERA)


@pytest.mark.parametrize("camera", [SIDE_CAMERA, NOISY_SIDE_CAMERA, camera_looking((0.3, 1.0, -0.4)),
                                    camera_looking((-1.0, 0.2, 0.0))],
                         ids=["side", "side-as-blender-gives-it", "front-elevated", "other-side"])
def test_turns_make_the_character_face_each_direction(camera):
    pivot = np.array([2.0, -1.0, 0.5])
    turns = direction_turns(COMPASS, FORWARD, camera, pivot)
    assert list(turns) == list(COMPASS)
    for name, turn in turns.items():
        turned_forward = turn[:3, :3] @ FORWARD
        assert angular_distance(facing_angle(turned_forward, camera), 45.0 * COMPASS.index(name)) < 1e-6
        np.testing.assert_allclose(turn[:3, :3] @ pivot + turn[:3, 3], pivot, atol=1e-12)  # the root stays
        assert turn[2, 2] == 1.0 and turn[2, 3] == 0.0  # about the vertical: heights unchanged


def test_turn_about_vertical_is_counter_clockwise_from_above():
    turn = turn_about_vertical(90.0, (0.0, 0.0, 0.0))
    np.testing.assert_allclose(turn[:3, :3] @ np.array([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)
    assert math.isclose(np.linalg.det(turn[:3, :3]), 1.0)
