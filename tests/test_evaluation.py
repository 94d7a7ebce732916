"""`spritediff evaluate` and its metrics: known values, a tiny synthetic held-out dataset, clear failures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import TINY_WEIGHTS
from PIL import Image

from spritediff_core.cli import main
from spritediff_core.dataset import load_dataset, nearest_reference
from spritediff_core.drawing import draw_pose
from spritediff_core.errors import InvalidInputError
from spritediff_core.evaluation import EvaluationSettings, evenly_spaced, generation_size, select_clips
from spritediff_core.metrics import PSNR_CAP_DB, foreground_iou, psnr, seam_ratio, ssim
from spritediff_core.poses import PoseFrame, PoseSequence

SIZE = 64
COLOUR = (200, 60, 40)
# The reference's character: a solid rectangle; ground-truth frames shift it right by SHIFTS pixels.
REFERENCE_BOX = (20, 10, 44, 58)  # x0, y0, x1, y1 (exclusive)
SHIFTS = (3, 6)


# ---------------------------------------------------------------- metrics on known images
def test_psnr_of_a_constant_difference_and_of_identical_images():
    a = np.full((16, 16, 3), 100, np.uint8)
    for difference in (1, 5, 40):
        assert psnr(a, a + np.uint8(difference)) == pytest.approx(20 * math.log10(255 / difference))
    assert psnr(a, a) == PSNR_CAP_DB


def windowed_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM by its definition: every 11x11 window inside the image, Gaussian weights (sigma 1.5)."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    weights = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for y in range(a.shape[0] - 10):
        for x in range(a.shape[1] - 10):
            pa, pb = a[y:y + 11, x:x + 11].astype(float), b[y:y + 11, x:x + 11].astype(float)
            ma, mb = (weights * pa).sum(), (weights * pb).sum()
            va, vb = (weights * (pa - ma) ** 2).sum(), (weights * (pb - mb) ** 2).sum()
            cov = (weights * (pa - ma) * (pb - mb)).sum()
            values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_its_definition_and_behaves():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (15, 17, 3)).astype(np.uint8)
    noisy = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    per_channel = np.mean([windowed_ssim(a[..., c], noisy[..., c]) for c in range(3)])
    assert ssim(a, noisy) == pytest.approx(per_channel, abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, noisy) == pytest.approx(ssim(noisy, a), abs=1e-12)
    noisier = np.clip(a + rng.normal(0, 60, a.shape), 0, 255).astype(np.uint8)
    assert 1.0 > ssim(a, noisy) > ssim(a, noisier)
    # Two flat images: no structure, only the luminance term (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
    c1 = (0.01 * 255) ** 2
    assert ssim(np.full((12, 12), 50, np.uint8), np.full((12, 12), 150, np.uint8)) == pytest.approx(
        (2 * 50 * 150 + c1) / (50 ** 2 + 150 ** 2 + c1))
    with pytest.raises(InvalidInputError, match="at least 11x11"):
        ssim(a[:10], a[:10])
    with pytest.raises(InvalidInputError, match="differ in shape"):
        ssim(a, a[:12])


def test_foreground_iou_of_rectangles_and_empty_masks():
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[2:10, 2:12] = True  # 8 x 10 = 80
    b[5:15, 6:16] = True  # 10 x 10 = 100, overlap rows 5..9 x cols 6..11 = 5 x 6 = 30
    assert foreground_iou(a, b) == pytest.approx(30 / (80 + 100 - 30))
    assert foreground_iou(a, a) == 1.0
    empty = np.zeros((20, 20), bool)
    assert foreground_iou(empty, empty) == 1.0  # nothing to disagree on
    assert foreground_iou(a, empty) == 0.0


def test_seam_ratio_compares_the_wrap_around_step_with_the_others():
    def frames(*values):
        return [np.full((4, 4, 3), value, np.uint8) for value in values]

    assert seam_ratio(frames(0, 10, 20, 30)) == pytest.approx(3.0)  # an open ramp: the seam is 3 steps long
    assert seam_ratio(frames(0, 10, 20, 10)) == pytest.approx(1.0)  # a closed cycle: no seam
    assert seam_ratio(frames(0, 10, 20, 25)) == pytest.approx(25 / (25 / 3))
    assert seam_ratio(frames(0, 10)) is None and seam_ratio(frames(5, 5, 5)) is None
    with pytest.raises(InvalidInputError, match="seam_ratio"):
        seam_ratio([np.zeros((4, 4, 3)), np.zeros((4, 5, 3)), np.zeros((4, 4, 3))])


@pytest.mark.parametrize("azimuth, expected", [(0, "front"), (30, "three_quarter"), (100, "side"), (180, "side"),
                                               (225, "front"), (270, "front"), (315, "front"), (-45, "front")])
def test_nearest_reference_by_angle(azimuth, expected):
    assert nearest_reference(azimuth, ("front", "three_quarter", "side")) == expected
    assert nearest_reference(azimuth, ("side",)) == "side"
    with pytest.raises(InvalidInputError, match="no reference picture"):
        nearest_reference(azimuth, ("back",))


def test_evenly_spaced_samples_include_both_ends():
    assert evenly_spaced(3, 12) == [0, 1, 2]
    assert evenly_spaced(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced(5, 1) == [0]


# ---------------------------------------------------------------- a tiny held-out dataset
def rectangle_rgba(shift: int = 0) -> Image.Image:
    x0, y0, x1, y1 = REFERENCE_BOX
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[y0:y1, x0 + shift:x1 + shift] = (*COLOUR, 255)
    return Image.fromarray(rgba, "RGBA")


def standing_pose(shift: float) -> PoseFrame:
    body = np.zeros((18, 3))
    points = {0: (32, 14), 1: (32, 22), 2: (26, 23), 3: (24, 32), 4: (23, 40), 5: (38, 23), 6: (40, 32),
              7: (41, 40), 8: (28, 40), 9: (28, 50), 10: (28, 58), 11: (36, 40), 12: (36, 50), 13: (36, 58),
              14: (31, 13), 15: (33, 13), 16: (30, 14), 17: (34, 14)}
    for index, (x, y) in points.items():
        body[index] = (x + shift, y, 1.0)
    return PoseFrame(body, SIZE, SIZE)


def write_dataset(root, clips=(("char_0000", "000_walk_side", "walk", "side"),
                               ("char_0001", "000_jump_dir_045", "jump", "dir_045")), shifts=SHIFTS):
    root.mkdir()
    for name, clip, motion, view in clips:
        character = root / name
        (character / "reference").mkdir(parents=True, exist_ok=True)
        references = {}
        for reference_view in ("front", "three_quarter", "side"):
            rectangle_rgba().save(character / "reference" / f"{reference_view}.png")
            references[reference_view] = f"reference/{reference_view}.png"
        folder = character / "clips" / clip
        folder.mkdir(parents=True)
        sequence = PoseSequence([standing_pose(shift) for shift in shifts], name=clip, loop=motion != "jump")
        sequence.save(folder / "poses.json")
        for index, (frame, shift) in enumerate(zip(sequence.frames, shifts)):
            draw_pose(frame, stroke_scale="auto").save(folder / f"pose_{index:04d}.png")
            rectangle_rgba(shift).save(folder / f"frame_{index:04d}.png")
        (folder / "clip.json").write_text(json.dumps({
            "motion": motion, "preset": motion, "variation": {},
            "view": {"name": view, "azimuth_deg": 90.0 if view == "side" else float(view[4:]),
                     "projection": "ORTHO"},
            "fps": 8, "loop": motion != "jump", "frames": len(shifts)}))
        (character / "character.json").write_text(json.dumps({
            "name": name, "seed": 0, "recipe": {}, "references": references, "clips": [clip]}))
    (root / "dataset.json").write_text(json.dumps({
        "format": "spritediff-dataset", "version": 1, "size": [SIZE, SIZE], "seed": 0, "source": "procedural",
        "characters": [name for name, *_ in clips]}))
    return root


def evaluate_args(data, out, *extra):
    return ["evaluate", "--model", str(TINY_WEIGHTS), "--data", str(data), "--out", str(out),
            "--num-inference-steps", "2", "--seed", "3", "--device", "cpu", "--dtype", "fp32", *extra]


def expected_baseline(shift: int) -> dict:
    """The copied reference against a ground-truth frame shifted by `shift` px, worked out by hand."""
    x0, y0, x1, y1 = REFERENCE_BOX
    width, height = x1 - x0, y1 - y0
    # Differing pixels: the strip the rectangle left and the strip it entered, each `shift` wide.
    squared_error = 2 * shift * height * sum(c ** 2 for c in COLOUR)
    mse = squared_error / (SIZE * SIZE * 3)
    on_black = np.asarray(Image.alpha_composite(Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 255)),
                                                rectangle_rgba()).convert("RGB"))
    truth = np.asarray(Image.alpha_composite(Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 255)),
                                             rectangle_rgba(shift)).convert("RGB"))
    return {"psnr": 10 * math.log10(255 ** 2 / mse), "ssim": ssim(on_black, truth),
            "iou": (width - shift) / (width + shift)}


def test_evaluate_writes_metrics_and_a_contact_sheet(tmp_path, pipe, capsys):
    data = write_dataset(tmp_path / "heldout")
    out = tmp_path / "eval"
    assert main(evaluate_args(data, out)) == 0
    printed = capsys.readouterr().out
    assert "[1/2] char_0000/000_walk_side" in printed and "[2/2] char_0001/000_jump_dir_045" in printed
    assert sorted(p.name for p in out.iterdir()) == [".spritediff-files.json", "contact_sheet.png",
                                                     "generation.json", "metrics.json", "metrics.md"]
    report = json.loads((out / "metrics.json").read_text())
    assert report["counts"] == {"characters": 2, "clips": 2, "frames": 4}
    settings = report["settings"]
    assert (settings["width"], settings["height"], settings["steps"], settings["seed"]) == (64, 64, 2, 3)
    assert settings["reference_view"] == "side" and settings["views"] == "all"
    assert "dataset" in settings["size_from"]  # the tiny model has no native size
    assert [(row["character"], row["clip"], row["view"], row["motion"], row["frames"])
            for row in report["clips"]] == [("char_0000", "000_walk_side", "side", "walk", 2),
                                            ("char_0001", "000_jump_dir_045", "dir_045", "jump", 2)]

    by_hand = [expected_baseline(shift) for shift in SHIFTS]
    by_hand_iou = np.mean([value["iou"] for value in by_hand])
    for row in report["clips"]:
        for name in ("psnr", "ssim", "iou"):
            assert row["baseline"][name] == pytest.approx(np.mean([value[name] for value in by_hand]), rel=1e-9)
        model = row["model"]
        assert 0 < model["psnr"] < PSNR_CAP_DB and -1 <= model["ssim"] < 1 and 0 <= model["iou"] <= 1

    # The model's scores are those of the frames the pipeline makes with the same settings.
    reference = Image.open(data / "char_0001" / "reference" / "side.png")
    clip = data / "char_0001" / "clips" / "000_jump_dir_045"
    poses = [Image.open(clip / f"pose_{i:04d}.png").convert("RGB") for i in range(2)]
    frames = pipe(reference, poses, 64, 64, num_inference_steps=2, seed=3, loop=False)
    truths = [np.asarray(Image.alpha_composite(Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 255)),
                                               Image.open(clip / f"frame_{i:04d}.png")).convert("RGB"))
              for i in range(2)]
    expected_psnr = np.mean([psnr(np.asarray(frame), truth) for frame, truth in zip(frames, truths)])
    assert report["clips"][1]["model"]["psnr"] == pytest.approx(expected_psnr, rel=1e-6)

    means = report["means"]
    assert means["overall"]["clips"] == 2 and means["overall"]["frames"] == 4
    assert means["overall"]["baseline"]["iou"] == pytest.approx(report["clips"][0]["baseline"]["iou"])
    assert means["overall"]["model"]["psnr"] == pytest.approx(np.mean([r["model"]["psnr"] for r in report["clips"]]))
    assert set(means["per_view"]) == {"side", "dir_045"} and set(means["per_motion"]) == {"walk", "jump"}
    assert means["per_view"]["dir_045"]["model"] == report["clips"][1]["model"]

    table = (out / "metrics.md").read_text()
    assert "| **all** | 2 | 4 |" in table and "| view dir_045 | 1 | 2 |" in table and "| motion walk |" in table
    # Two rows (one per clip) of reference + (pose, generated, truth) x 2 frames, under a header.
    assert Image.open(out / "contact_sheet.png").size == (170 + 7 * (128 + 4), 26 + 2 * (128 + 4))

    # A second run replaces its own outputs; --views keeps only the named views; at another size the poses
    # are redrawn and the ground truth resized.
    assert main(evaluate_args(data, out, "--views", "dir_045", "--reference-view", "front", "--width", "32",
                              "--height", "32")) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert [row["clip"] for row in report["clips"]] == ["000_jump_dir_045"]
    assert report["settings"]["views"] == ["dir_045"] and report["settings"]["reference_view"] == "front"
    assert (report["settings"]["width"], report["settings"]["height"]) == (32, 32)
    assert report["clips"][0]["baseline"]["iou"] == pytest.approx(by_hand_iou, abs=0.05)


def test_per_direction_references_and_seams_of_cycles(tmp_path):
    data = write_dataset(tmp_path / "heldout", clips=(("char_0000", "000_walk_dir_315", "walk", "dir_315"),
                                                      ("char_0000", "001_jump_dir_045", "jump", "dir_045")),
                         shifts=(0, 3, 6, 3))
    info = json.loads((data / "char_0000" / "character.json").read_text())
    info["clips"] = ["000_walk_dir_315", "001_jump_dir_045"]
    (data / "char_0000" / "character.json").write_text(json.dumps(info))
    dataset_info = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**dataset_info, "characters": ["char_0000"]}))
    out = tmp_path / "eval"
    assert main(evaluate_args(data, out, "--reference-view", "nearest", "--loop-mode", "reference")) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["settings"]["loop_mode"] == "reference" and report["settings"]["reference_view"] == "nearest"
    walk, jump = report["clips"]
    assert (walk["reference_view"], jump["reference_view"]) == ("front", "three_quarter")
    assert "seam_ratio" not in jump  # one-shots have no seam
    # The truth is a closed cycle (shifts 0, 3, 6, 3): its last step is like the others.
    assert walk["seam_ratio"]["truth"] == pytest.approx(1.0)
    assert walk["seam_ratio"]["model"] > 0
    assert report["means"]["seam"] == {"clips": 1, **walk["seam_ratio"]}
    assert "Seam ratio of the cycles (1 clips" in (out / "metrics.md").read_text()


def test_size_and_clip_selection(tmp_path):
    dataset = load_dataset(write_dataset(tmp_path / "heldout"))
    settings = EvaluationSettings(tmp_path / "model", dataset.root, tmp_path / "out")

    class NativeSize:
        native_size = (128, 96)

    assert generation_size(settings, NativeSize(), dataset)[0] == (128, 96)
    assert generation_size(settings, object(), dataset)[0] == (64, 64)
    sized = EvaluationSettings(tmp_path / "model", dataset.root, tmp_path / "out", size=(32, 48))
    assert generation_size(sized, NativeSize(), dataset) == ((32, 48), "--width/--height")
    assert [clip.name for _, clip in select_clips(dataset, "side", None, 1)] == ["000_walk_side"]
    assert [clip.name for _, clip in select_clips(dataset, "side", ("side", "dir_045"), None)] == [
        "000_walk_side", "000_jump_dir_045"]


def unchanged(data):
    return data


def elsewhere(data):
    return data.parent / "nowhere"


def without_dataset_json(data):
    (data / "dataset.json").unlink()
    return data


def without_front_reference(data):
    info = json.loads((data / "char_0000" / "character.json").read_text())
    del info["references"]["front"]
    (data / "char_0000" / "character.json").write_text(json.dumps(info))
    return data


@pytest.mark.parametrize("breakage, extra, message", [
    (elsewhere, (), "dataset folder"),
    (without_dataset_json, (), "dataset.json is missing"),
    (unchanged, ("--views", "dir_999"), "--views names dir_999, which no clip"),
    (without_front_reference, ("--reference-view", "front"), "char_0000 has no 'front' reference picture"),
    (unchanged, ("--width", "64"), "give both --width and --height"),
    (unchanged, ("--width", "60", "--height", "64"), "multiples of 8"),
    (unchanged, ("--guidance-scale", "0.5"), "--guidance-scale must be 0 (the model's recommended value) or"),
    (unchanged, ("--guidance-scale", "nan"), "--guidance-scale must be 0 (the model's recommended value) or"),
    (unchanged, ("--seed", "100000000000000000000000"), "--seed must be"),
], ids=["no-folder", "no-dataset-json", "unknown-view", "missing-reference", "width-only", "bad-size",
        "bad-guidance", "nan-guidance", "huge-seed"])
def test_bad_inputs_fail_before_the_model_loads(tmp_path, capsys, breakage, extra, message):
    data = breakage(write_dataset(tmp_path / "heldout"))
    out = tmp_path / "eval"
    args = evaluate_args(data, out, *extra)
    args[args.index("--model") + 1] = str(tmp_path / "no-model")  # the input problem is reported first
    assert main(args) == 1
    error = capsys.readouterr().err
    assert error.startswith("spritediff: error:") and message in error
    assert not out.exists()


def test_model_errors_and_foreign_outputs_are_reported(tmp_path, capsys):
    data = write_dataset(tmp_path / "heldout")
    args = evaluate_args(data, tmp_path / "eval")
    args[args.index("--model") + 1] = str(tmp_path / "no-model")
    assert main(args) == 1
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heldout"]  # no staging leftovers

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "metrics.json").write_text("{}")
    assert main(evaluate_args(data, taken)) == 1
    assert "not written by spritediff" in capsys.readouterr().err
    assert (taken / "metrics.json").read_text() == "{}"


def test_unknown_reference_view_is_refused():
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", "m", "--data", "d", "--out", "o", "--reference-view", "back"])
    assert exit_info.value.code == 2
    with pytest.raises(InvalidInputError, match="unknown reference view 'back'"):
        EvaluationSettings("m", "d", "o", reference_view="back").check()
