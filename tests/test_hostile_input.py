"""Hostile input to the `spritediff` command line: every case ends with exit code 1 or 2, one clear line, no
traceback, and every file that was there before unchanged; errors that need no model come before it loads."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import MOORE_TINY, TINY_WEIGHTS
from PIL import Image

from spritediff_core.staged_writes import open_image

REFERENCE = MOORE_TINY / "inputs" / "ref.png"
ROOT = MOORE_TINY.parent.parent.parent


class Result:
    def __init__(self, completed):
        self.code, self.err = completed.returncode, completed.stderr


def spritediff(*args) -> Result:
    """The command line as a user runs it, in its own process: what they see on stderr is all there is."""
    return Result(subprocess.run([sys.executable, "-m", "spritediff_core", *map(str, args)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=600))


def digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def generate(out, model=TINY_WEIGHTS, reference=REFERENCE, *extra) -> Result:
    return spritediff("generate", "--model", model, "--reference", reference, "--poses",
                      MOORE_TINY / "inputs" / "pose_*.png", "--out", out, "--width", "64", "--height", "64",
                      "--num-inference-steps", "1", *extra)


def one_clear_line(result: Result, code: int, *words):
    assert result.code == code, result.err
    assert "Traceback" not in result.err and "weights_only=False" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    for word in words:
        assert word in lines[0], result.err
    return lines[0]


def broken_weights(tmp_path, relative, content: bytes | None):
    weights = tmp_path / "weights"
    shutil.copytree(TINY_WEIGHTS, weights)
    target = weights / relative
    if content is None:
        target.unlink()
    else:
        target.write_bytes(content)
    return weights


def config_that_does_not_fit() -> bytes:
    import json

    config = json.loads((TINY_WEIGHTS / "image_encoder" / "config.json").read_text())
    config["intermediate_size"] = config.get("intermediate_size", 64) * 2  # every MLP weight mis-shaped
    return json.dumps(config).encode()


@pytest.mark.parametrize("relative, content, words", [
    ("image_encoder/config.json", config_that_does_not_fit(), ("image_encoder",)),
    ("image_encoder/config.json", b"{not json", ("image_encoder",)),
    ("image_encoder/config.json", None, ("image_encoder",)),
    ("image_encoder/pytorch_model.bin", b"PK\x03\x04truncated", ("image_encoder",)),
    ("denoising_unet.pth", b"\x80\x02truncated", ("denoising_unet.pth", "cannot be read")),
    ("inference_v2.yaml", b"key: [unclosed", ("inference_v2.yaml",)),
    ("stable-diffusion-v1-5/unet/config.json", b"[1, 2]", ("config.json",)),
], ids=["encoder-config-does-not-fit", "encoder-config-broken", "encoder-config-missing", "encoder-truncated",
        "unet-truncated", "yaml-broken",
        "unet-config-not-an-object"])
def test_broken_weights_give_one_line_and_no_output(tmp_path, relative, content, words):
    weights = broken_weights(tmp_path, relative, content)
    before = digests(tmp_path)
    one_clear_line(generate(tmp_path / "out", weights), 1, *words)
    assert digests(tmp_path) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, code, words", [
    (("--seed", str(2**40)), 1, ("seed must be at most",)),
    (("--seed", "-1"), 1, ("seed must be at least 0",)),
    (("--guidance-scale", "inf"), 1, ("finite",)),
    (("--width", "100000"), 1, ("width must be at most 4096",)),
    (("--num-inference-steps", "0"), 1, ("num_inference_steps",)),
    (("--device", "tpu"), 2, ("--device",)),
    (("--context-frames", "x"), 2, ("--context-frames",)),
])
def test_bad_numbers_and_choices_fail_before_the_model_loads(tmp_path, flags, code, words):
    # The model folder does not exist: a message about the flag proves nothing was loaded first.
    result = generate(tmp_path / "out", tmp_path / "no-model", REFERENCE, *flags)
    if code == 2:  # argparse's usage line, then the error
        assert result.code == 2 and "Traceback" not in result.err and all(w in result.err for w in words)
    else:
        one_clear_line(result, 1, *words)
    assert list(tmp_path.iterdir()) == []


def test_a_settings_file_that_is_not_json_is_one_line(tmp_path):
    bad = tmp_path / "generation.json"
    bad.write_text("{")
    one_clear_line(generate(tmp_path / "out", TINY_WEIGHTS, REFERENCE, "--settings", bad), 1, "not valid JSON")


def test_pictures_are_read_as_shown(tmp_path):
    # 16-bit grey: scaled to 8 bits, not clipped to white.
    grey16 = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    picture = open_image(tmp_path / "grey16.png")
    assert picture.mode == "RGB" and 100 < np.asarray(picture).mean() < 155
    # EXIF orientation: a landscape file marked "rotate 90" is a portrait picture.
    wide = Image.new("RGB", (40, 20), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    wide.save(tmp_path / "rotated.jpg", exif=exif)
    assert open_image(tmp_path / "rotated.jpg").size == (20, 40)
    # Palette with transparency and grey with alpha keep their transparency.
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png", transparency=0)
    assert open_image(tmp_path / "palette.png").mode == "RGBA"
    Image.new("LA", (8, 8), (128, 10)).save(tmp_path / "la.png")
    assert open_image(tmp_path / "la.png").getpixel((0, 0)) == (128, 128, 128, 10)
    # An animated file: its first frame.
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert open_image(tmp_path / "anim.gif").convert("RGB").getpixel((0, 0))[0] > 200


def test_unreadable_and_huge_pictures_are_one_line(tmp_path):
    (tmp_path / "ref.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    one_clear_line(generate(tmp_path / "out", TINY_WEIGHTS, tmp_path / "ref.png"), 1, "not a readable image")
    Image.new("L", (9000, 9000)).save(tmp_path / "huge.png")
    one_clear_line(generate(tmp_path / "out", TINY_WEIGHTS, tmp_path / "huge.png"), 1, "9000x9000", "scale it down")
    one_clear_line(generate(tmp_path / "out", TINY_WEIGHTS, tmp_path), 1, "folder")


def sheet_frames(folder, transparent: bool):
    """Three frames: a coloured block in a black outline, on transparency or (as generated) on black."""
    folder.mkdir()
    for index in range(3):
        frame = Image.new("RGBA", (32, 32), (0, 0, 0, 0 if transparent else 255))
        frame.paste((0, 0, 0, 255), (6, 2, 26, 32))  # the outline: opaque black, touching the border below
        frame.paste((40 + 60 * index, 200, 90, 255), (8, 4, 24, 30))
        (frame if transparent else frame.convert("RGB")).save(folder / f"frame_{index:04d}.png")


def test_pack_refuses_to_write_into_its_inputs(tmp_path):
    sheet_frames(tmp_path / "walk", transparent=False)
    before = digests(tmp_path)
    for out in (tmp_path / "walk", tmp_path / "walk" / "sheet"):
        one_clear_line(spritediff("pack", tmp_path / "walk", "--out", out), 1, "input")
    assert digests(tmp_path) == before


def test_pack_keeps_the_frames_own_transparency(tmp_path):
    sheet_frames(tmp_path / "walk", transparent=True)
    result = spritediff("pack", tmp_path / "walk", "--out", tmp_path / "sheet", "--layout", "grid", "--padding", "0")
    assert result.code == 0, result.err
    atlas = np.asarray(Image.open(tmp_path / "sheet" / "atlas.png").convert("RGBA"))
    opaque = atlas[..., 3] == 255
    assert opaque.sum() == 3 * 20 * 30  # every frame's own opaque pixels, its black outline included
    assert set(np.unique(atlas[..., 3])) == {0, 255}
    assert (atlas[opaque][:, :3].max(axis=1) == 0).sum() == 3 * (20 * 30 - 16 * 26)


def test_a_pose_canvas_no_generation_could_use_is_refused_with_its_memory(tmp_path):
    from spritediff_core.poses import PoseFrame, PoseSequence

    body = np.zeros((18, 3))
    body[:, :2], body[:, 2] = 32.0, 1.0
    PoseSequence([PoseFrame(body, 64, 64)], name="stand").save(tmp_path / "poses.json")
    line = one_clear_line(spritediff("draw-poses", tmp_path / "poses.json", "--out", tmp_path / "out",
                                     "--width", "30000", "--height", "30000"), 1, "30000x30000")
    assert "MB per picture" in line and not (tmp_path / "out").exists()


def test_training_refuses_weights_that_do_not_fit_their_config(tmp_path):
    from spritediff_core.errors import WeightsMismatchError, WeightsNotFoundError
    from spritediff_core.training.models import load_parts

    weights = broken_weights(tmp_path, "image_encoder/config.json", config_that_does_not_fit())
    with pytest.raises((WeightsMismatchError, WeightsNotFoundError), match="image"):
        load_parts(weights)


def test_a_folder_with_other_files_is_refused_unless_added_to(tmp_path):
    sheet_frames(tmp_path / "walk", transparent=True)
    out = tmp_path / "game" / "sprites"
    out.mkdir(parents=True)
    (out / "readme.txt").write_text("the artist's notes")
    (out / "hero.png").write_bytes(b"not ours")
    before = digests(tmp_path)
    one_clear_line(spritediff("pack", tmp_path / "walk", "--out", out), 1, "readme.txt", "--add-to-folder")
    assert digests(tmp_path) == before

    for _ in range(2):  # the second run replaces only its own outputs, the artist's files stay
        result = spritediff("pack", tmp_path / "walk", "--out", out, "--add-to-folder")
        assert result.code == 0, result.err
        assert {"readme.txt", "hero.png", "atlas.png", "atlas.json"} <= {p.name for p in out.iterdir()}
        assert all(digests(tmp_path)[name] == before[name] for name in before)

    # A name clash is never written over, even when adding to the folder.
    one_clear_line(spritediff("pack", tmp_path / "walk", "--out", out, "--add-to-folder", "--basename", "hero"),
                   1, "hero.png")
    assert (out / "hero.png").read_bytes() == b"not ours"


def test_generate_adds_frames_beside_other_files_only_when_asked(tmp_path):
    out = tmp_path / "frames"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    one_clear_line(generate(out), 1, "notes.txt")  # refused before the model loads
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    result = generate(out, TINY_WEIGHTS, REFERENCE, "--add-to-folder")
    assert result.code == 0, result.err
    assert (out / "notes.txt").read_text() == "keep me" and (out / "frame_0000.png").is_file()

    (out / "frame_0001.png").write_bytes(b"the artist's own frame")  # a clash is refused before the model loads
    line = one_clear_line(generate(out, TINY_WEIGHTS, REFERENCE, "--add-to-folder"), 1, "frame_0001.png")
    assert (out / "frame_0001.png").read_bytes() == b"the artist's own frame" and "model" not in line


def test_a_link_to_an_input_is_that_input(tmp_path):
    sheet_frames(tmp_path / "walk", transparent=True)
    (tmp_path / "sheet").symlink_to(tmp_path / "walk")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    before = digests(tmp_path / "walk")
    one_clear_line(spritediff("pack", tmp_path / "walk", "--out", tmp_path / "sheet"), 1, "input")
    one_clear_line(spritediff("pack", tmp_path / "walk", "--out", tmp_path / "broken"), 1, "broken link")
    (tmp_path / "poses").symlink_to(MOORE_TINY / "inputs")  # the folder generate reads its poses from
    inputs = digests(MOORE_TINY / "inputs")
    one_clear_line(generate(tmp_path / "poses" / "frames"), 1, "inside the input")
    assert digests(tmp_path / "walk") == before and digests(MOORE_TINY / "inputs") == inputs


def test_one_commands_outputs_are_never_replaced_by_another_command(tmp_path):
    """A sheet written over a folder of generated frames would delete the frames (and their settings)."""
    frames = tmp_path / "frames"
    assert generate(frames).code == 0
    before = digests(frames)
    one_clear_line(spritediff("pack", tmp_path / "other_frames_that_do_not_exist", "--out", frames), 1)
    sheet_frames(tmp_path / "walk", transparent=True)
    one_clear_line(spritediff("pack", tmp_path / "walk", "--out", frames), 1, "frame_0000.png")
    assert digests(frames) == before
    assert generate(frames).code == 0  # its own kind of output: replaced as before


def test_an_input_file_inside_the_output_folder_is_refused(tmp_path):
    from spritediff_core.poses import PoseFrame, PoseSequence

    body = np.zeros((18, 3))
    body[:, :2], body[:, 2] = 32.0, 1.0
    folder = tmp_path / "poses"
    assert spritediff("draw-poses", save_sequence(tmp_path, PoseSequence([PoseFrame(body, 64, 64)])), "--out",
                      folder).code == 0
    before = digests(folder)
    one_clear_line(spritediff("draw-poses", folder / "poses.json", "--out", folder, "--width", "128"), 1,
                   "holds the input")
    assert digests(folder) == before


def save_sequence(folder, sequence):
    sequence.save(folder / "sequence.json")
    return folder / "sequence.json"


@pytest.mark.parametrize("args, code, words", [
    (("--name", "../../evil"), 2, ("--name", "plain file name")),
    (("--basename", "../evil"), 2, ("--basename", "plain file name")),
    (("--basename", ""), 2, ("--basename",)),
    (("--fps", "nan"), 2, ("--fps",)),
    (("--fps", "0"), 2, ("--fps",)),
])
def test_pack_names_and_rates_are_checked(tmp_path, args, code, words):
    sheet_frames(tmp_path / "walk", transparent=True)
    before = digests(tmp_path)
    result = spritediff("pack", tmp_path / "walk", "--out", tmp_path / "sheet", *args)
    assert result.code == code and "Traceback" not in result.err and all(w in result.err for w in words)
    assert digests(tmp_path) == before and not (tmp_path / "sheet").exists()


def test_a_broken_generation_record_is_one_line(tmp_path):
    sheet_frames(tmp_path / "walk", transparent=True)
    for record, words in (("[1, 2]", "expected a JSON object"), ('{"fps": "fast"}', "fps"),
                          ('{"fps": NaN}', "fps"), ('{"animation": "../x"}', "--name")):
        (tmp_path / "walk" / "generation.json").write_text(record)
        one_clear_line(spritediff("pack", tmp_path / "walk", "--out", tmp_path / "sheet"), 1, words)
        assert not (tmp_path / "sheet").exists()


@pytest.mark.parametrize("poses_json, words", [
    ({"frames": [{"people": [{"pose_keypoints_2d": ["a"] * 54}], "canvas_width": 64, "canvas_height": 64}]},
     "expected numbers"),
    ({"frames": [{"people": [{"pose_keypoints_2d": [1e300] * 54}], "canvas_width": 64, "canvas_height": 64}]},
     "within"),
    ({"frames": [{"people": [{"pose_keypoints_2d": [1.0] * 54}], "canvas_width": "wide", "canvas_height": 64}]},
     "canvas_width"),
    ({"fps": "fast", "frames": [{"people": [{"pose_keypoints_2d": [1.0] * 54}], "canvas_width": 64,
                                 "canvas_height": 64}]}, "fps"),
])
def test_draw_poses_refuses_what_it_cannot_draw(tmp_path, poses_json, words):
    import json

    (tmp_path / "poses.json").write_text(json.dumps(poses_json))
    one_clear_line(spritediff("draw-poses", tmp_path / "poses.json", "--out", tmp_path / "out"), 1, words)
    result = spritediff("draw-poses", tmp_path / "poses.json", "--out", tmp_path / "out", "--stroke-scale", "nan")
    assert result.code == 2 and "--stroke-scale" in result.err
    assert not (tmp_path / "out").exists()


def test_a_device_this_machine_lacks_is_refused_before_loading(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    one_clear_line(generate(tmp_path / "out", tmp_path / "no-weights", REFERENCE, "--device", "cuda"), 1,
                   "device 'cuda' is not available")
    one_clear_line(spritediff("train", "--stage", "1", "--data", tmp_path / "data", "--init", TINY_WEIGHTS, "--out",
                              tmp_path / "run", "--device", "cuda"), 1, "device 'cuda' is not available")
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()
