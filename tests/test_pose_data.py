"""OpenPose JSON pose data: round trips, other tools' shapes, clear errors, and the draw-poses command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from spritediff_core.cli import main
from spritediff_core.drawing import draw_pose_array
from spritediff_core.errors import InvalidInputError
from spritediff_core.poses import PoseFrame, PoseSequence


def sample_frame(shift=0.0, hands=True, face=True) -> PoseFrame:
    rng = np.random.default_rng(3)
    body = np.concatenate([rng.uniform(20, 100, (18, 2)) + shift, np.ones((18, 1))], 1)
    body[15, 2] = 0.0  # left eye hidden
    hand = lambda: np.concatenate([rng.uniform(30, 90, (21, 2)), np.ones((21, 1))], 1)  # noqa: E731
    return PoseFrame(body, 128, 160, hand() if hands else None, hand() if hands else None,
                     np.concatenate([rng.uniform(40, 60, (68, 2)), np.ones((68, 1))], 1) if face else None)


def test_sequence_round_trips_through_openpose_json(tmp_path):
    sequence = PoseSequence([sample_frame(), sample_frame(5.0, hands=False)], name="walk", fps=12, loop=False)
    path = tmp_path / "walk.json"
    sequence.save(path)
    data = json.loads(path.read_text())
    person = data["frames"][0]["people"][0]
    assert len(person["pose_keypoints_2d"]) == 54 and len(person["hand_left_keypoints_2d"]) == 63
    assert len(person["face_keypoints_2d"]) == 204 and "hand_left_keypoints_2d" not in data["frames"][1]["people"][0]
    assert data["frames"][0]["canvas_width"] == 128 and data["loop"] is False and data["fps"] == 12
    loaded = PoseSequence.load(path)
    assert (loaded.name, loaded.fps, loaded.loop, len(loaded)) == ("walk", 12, False, 2)
    for before, after in zip(sequence.frames, loaded.frames):
        np.testing.assert_array_equal(before.body, after.body)
        assert (before.left_hand is None) == (after.left_hand is None)
    np.testing.assert_array_equal(draw_pose_array(sequence.frames[0]), draw_pose_array(loaded.frames[0]))


def test_reads_comfyui_lists_and_single_openpose_frames(tmp_path):
    frame = sample_frame().to_openpose()
    (tmp_path / "list.json").write_text(json.dumps([frame, frame]))
    (tmp_path / "single.json").write_text(json.dumps(frame))
    assert len(PoseSequence.load(tmp_path / "list.json")) == 2
    single = PoseSequence.load(tmp_path / "single.json")
    assert len(single) == 1 and single.name == "single" and single.frames[0].canvas_height == 160


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ('{"frames": []}', "has no frames"),
    ('{"frames": [{"people": []}], "canvas_width": 8, "canvas_height": 8}', "pose_keypoints_2d"),
    ('{"frames": [{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}], "canvas_width": 8, "canvas_height": 8}',
     "expected 18 points"),
    ('{"frames": [{"people": [{"pose_keypoints_2d": ' + json.dumps([0] * 54) + '}]}]}', "canvas_width"),
])
def test_bad_pose_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        PoseSequence.load(path)


def test_confidence_zero_means_not_visible():
    frame = sample_frame()
    assert not frame.visible[15] and frame.visible[14]


def test_draw_poses_command(tmp_path):
    sequence = PoseSequence([sample_frame(), sample_frame(3.0)], name="idle")
    sequence.save(tmp_path / "idle.json")
    out = tmp_path / "drawn"
    assert main(["draw-poses", str(tmp_path / "idle.json"), "--out", str(out), "--width", "256"]) == 0
    images = sorted(out.glob("pose_*.png"))
    assert [p.name for p in images] == ["pose_0000.png", "pose_0001.png"]
    assert Image.open(images[0]).size == (256, 320)  # height follows the canvas aspect
    scaled = PoseSequence.load(out / "poses.json")
    np.testing.assert_allclose(scaled.frames[0].body[:, :2], sequence.frames[0].body[:, :2] * 2)
    expected = draw_pose_array(sequence.frames[0], 256, 320, stroke_scale="auto")
    np.testing.assert_array_equal(np.asarray(Image.open(images[0])), expected)


def test_draw_poses_exact_dwpose_strokes_on_request(tmp_path):
    PoseSequence([sample_frame()]).save(tmp_path / "p.json")
    out = tmp_path / "exact"
    assert main(["draw-poses", str(tmp_path / "p.json"), "--out", str(out), "--stroke-scale", "1"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out / "pose_0000.png")),
                                  draw_pose_array(sample_frame(), stroke_scale=1.0))


def test_draw_poses_missing_file_fails_cleanly(tmp_path, capsys):
    assert main(["draw-poses", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "o").exists()
