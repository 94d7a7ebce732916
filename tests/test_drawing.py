"""Pose drawing is pixel-identical to DWPose's (the golden images), and strokes scale as documented."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DWPOSE_DRAW
from PIL import Image

from spritediff_core.drawing import draw_pose, draw_pose_array, stroke_scale_for
from spritediff_core.poses import PoseFrame

CASES = json.loads((DWPOSE_DRAW / "cases.json").read_text())


def frame_from_case(case) -> PoseFrame:
    """Fixture points are normalised; ours are pixels. (-1, -1) and invisible body points get confidence 0."""
    width, height = case["width"], case["height"]

    def points(values, visible):
        return [[x * width, y * height, 1.0 if ok else 0.0] for (x, y), ok in zip(values, visible)]

    left, right = case["hands"]
    return PoseFrame(
        points(case["body"], case["body_visible"]), width, height,
        left_hand=points(left, [x >= 0 for x, _ in left]),
        right_hand=points(right, [x >= 0 for x, _ in right]),
        face=points(case["face"], [x >= 0 for x, _ in case["face"]]),
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_dwpose_exactly(case):
    frame = frame_from_case(case)
    expected_full = np.asarray(Image.open(DWPOSE_DRAW / f"{case['name']}.png").convert("RGB"))
    expected_body = np.asarray(Image.open(DWPOSE_DRAW / f"{case['name']}_body.png").convert("RGB"))
    full = draw_pose_array(frame)
    assert full.shape == (case["height"], case["width"], 3)
    assert np.array_equal(full, expected_full), f"{np.count_nonzero((full != expected_full).any(-1))} px differ"
    body = draw_pose_array(frame, hands=False, face=False)
    assert np.array_equal(body, expected_body)


def test_auto_stroke_scale_is_dwpose_at_512():
    case = next(c for c in CASES if c["width"] == 512 and c["height"] == 512)
    frame = frame_from_case(case)
    assert stroke_scale_for(512, 768) == 1.0
    assert np.array_equal(draw_pose_array(frame, stroke_scale="auto"), draw_pose_array(frame))


def mask(image: np.ndarray) -> np.ndarray:
    return image.any(axis=-1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("size", [256, 1024])
def test_auto_strokes_look_like_a_resized_512_drawing(size):
    """At other sizes, auto strokes keep the 512 px proportions: the drawing matches a 512 px drawing
    resized to that size far better than DWPose's fixed 4 px strokes do."""
    case = next(c for c in CASES if c["width"] == 512 and c["height"] == 512)
    frame = frame_from_case(case)
    at_512 = draw_pose(frame.scaled_to(512, 512), stroke_scale=1.0)
    resized = mask(np.asarray(at_512.resize((size, size), Image.Resampling.NEAREST)))
    auto = mask(draw_pose_array(frame, size, size, stroke_scale="auto"))
    fixed = mask(draw_pose_array(frame, size, size, stroke_scale=1.0))
    assert iou(auto, resized) > 0.75
    assert iou(auto, resized) > iou(fixed, resized) + 0.15
    # Same amount of ink as the resized 512 px drawing (fixed 4 px strokes are off by ~1.8x at 256 px).
    assert 0.8 < auto.sum() / resized.sum() < 1.25
    assert not 0.8 < fixed.sum() / resized.sum() < 1.25


def test_strokes_never_vanish_on_tiny_canvases():
    frame = frame_from_case(CASES[0]).scaled_to(32, 32)
    assert mask(draw_pose_array(frame, stroke_scale="auto")).sum() > 20


def test_drawing_at_another_size_scales_coordinates():
    frame = frame_from_case(CASES[0])
    assert np.array_equal(draw_pose_array(frame, 256, 256), draw_pose_array(frame.scaled_to(256, 256)))


def test_invisible_body_points_draw_nothing():
    body = np.zeros((18, 3))
    frame = PoseFrame(body, 64, 64)
    assert not draw_pose_array(frame).any()
