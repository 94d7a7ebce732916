"""The `spritediff` command line: generate and convert, with clear failures that leave nothing behind."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import MOORE_TINY, TINY_WEIGHTS
from PIL import Image

from spritediff_core.cli import find_pose_images, main


def generate_args(out, *extra):
    return ["generate", "--model", str(TINY_WEIGHTS), "--reference", str(MOORE_TINY / "inputs" / "ref.png"),
            "--poses", str(MOORE_TINY / "inputs" / "pose_*.png"), "--out", str(out),
            "--width", "64", "--height", "64", "--num-inference-steps", "2", *extra]


def test_generate_writes_frames_and_settings(tmp_path, pipe, reference_image, pose_images):
    out = tmp_path / "walk"
    assert main(generate_args(out, "--seed", "5", "--loop", "one-shot", "--context-frames", "3",
                              "--context-overlap", "1")) == 0
    record = json.loads((out / "generation.json").read_text())
    assert record["files"] == [f"frame_{i:04d}.png" for i in range(4)]
    sampling = record["settings"]["sampling"]
    assert sampling["seed"] == 5 and sampling["loop"] == "one-shot" and sampling["context_frames"] == 3
    assert sampling["num_inference_steps"] == 2 and sampling["width"] == 64 and record["loop"] is False
    assert [p.rsplit("/", 1)[-1] for p in record["poses"]] == [f"pose_{i:02d}.png" for i in range(4)]
    expected = pipe(reference_image, pose_images, 64, 64, num_inference_steps=2, seed=5, context_frames=3,
                    context_overlap=1, loop=False)
    for name, frame in zip(record["files"], expected):
        np.testing.assert_array_equal(np.asarray(Image.open(out / name)), np.asarray(frame))


def test_a_recorded_generation_replays_with_settings(tmp_path):
    out = tmp_path / "run"
    assert main(generate_args(out, "--seed", "7", "--guidance-scale", "2.5", "--context-frames", "3",
                              "--context-overlap", "1")) == 0
    replay = ["generate", "--model", str(TINY_WEIGHTS), "--reference", str(MOORE_TINY / "inputs" / "ref.png"),
              "--poses", str(MOORE_TINY / "inputs" / "pose_*.png"), "--out", str(tmp_path / "again"),
              "--settings", str(out / "generation.json")]
    assert main(replay) == 0
    for name in ("frame_0000.png", "frame_0003.png"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    first = json.loads((out / "generation.json").read_text())["settings"]
    assert json.loads((tmp_path / "again" / "generation.json").read_text())["settings"] == first
    # A flag given with --settings overrides the recorded value.
    assert main(replay[:-2] + ["--out", str(tmp_path / "seed8"), "--settings", str(out / "generation.json"),
                               "--seed", "8"]) == 0
    assert json.loads((tmp_path / "seed8" / "generation.json").read_text())["settings"]["sampling"]["seed"] == 8


def test_guidance_defaults_to_the_model_cards_recommendation(tmp_path, pipe, reference_image, pose_images):
    from spritediff_core.weights import recommended_guidance

    assert recommended_guidance({}) == 3.5  # Moore's weights carry no card
    assert recommended_guidance({"recommended": {"guidance_scale": 1.25}}) == 1.25
    assert recommended_guidance({"recommended": {"guidance_scale": "high"}}) == 3.5
    assert recommended_guidance({"recommended": [1.5]}) == 3.5

    carded = tmp_path / "weights"
    shutil.copytree(TINY_WEIGHTS, carded)
    (carded / "spritediff.json").write_text(json.dumps({"name": "tiny", "recommended": {"guidance_scale": 1.0}}))
    runs = {}
    for name, model, extra in (("moore", TINY_WEIGHTS, ()), ("carded", carded, ()),
                               ("given", carded, ("--guidance-scale", "2"))):
        args = generate_args(tmp_path / name, *extra)
        args[args.index("--model") + 1] = str(model)
        assert main(args) == 0
        runs[name] = json.loads((tmp_path / name / "generation.json").read_text())["settings"]["sampling"]
    assert [runs[name]["guidance_scale"] for name in ("moore", "carded", "given")] == [3.5, 1.0, 2.0]
    unguided = pipe(reference_image, pose_images, 64, 64, num_inference_steps=2, guidance_scale=1.0, seed=1234)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "carded" / "frame_0000.png")),
                                  np.asarray(unguided[0]))


def test_bad_settings_are_reported_before_loading(tmp_path, capsys):
    for flags, message in ((("--guidance-scale", "0.5"), "guidance_scale must be 0 (the model's recommended"),
                           (("--guidance-scale", "-1"), "guidance_scale must be at least 0.0"),
                           (("--guidance-scale", "nan"), "guidance_scale must be a finite number"),
                           (("--context-frames", "4", "--context-overlap", "4"), "must be smaller than"),
                           (("--width", "60"), "width must be a multiple of 8")):
        args = generate_args(tmp_path / "bad", *flags)
        args[args.index("--model") + 1] = str(tmp_path / "no-such-weights")  # proves nothing was loaded first
        assert main(args) == 1
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerun_replaces_its_own_frames_only_and_refuses_a_folder_with_other_files(tmp_path, capsys):
    out = tmp_path / "anim"
    assert main(generate_args(out, "--seed", "1")) == 0
    two_poses = tmp_path / "two"
    two_poses.mkdir()
    for i in range(2):
        shutil.copy(MOORE_TINY / "inputs" / f"pose_0{i}.png", two_poses / f"p{i}.png")
    args = generate_args(out, "--seed", "1")
    args[args.index("--poses") + 1] = str(two_poses)
    (out / "notes.txt").write_text("mine")
    before = digests(out)
    assert main(args) == 1
    assert "notes.txt" in capsys.readouterr().err and digests(out) == before
    (out / "notes.txt").unlink()
    (out / "frame_0003.png").write_bytes(b"edited by hand")  # a changed output is the user's now
    assert main(args) == 1 and "frame_0003.png" in capsys.readouterr().err
    (out / "frame_0003.png").unlink()
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [".spritediff-files.json", "frame_0000.png", "frame_0001.png",
                                                      "generation.json"]


def test_outputs_never_land_in_an_input_folder(tmp_path, capsys):
    poses = tmp_path / "poses"
    shutil.copytree(MOORE_TINY / "inputs", poses)
    before = digests(tmp_path)
    for out in (poses, poses / "frames"):
        args = generate_args(out)
        args[args.index("--poses") + 1] = str(poses)
        args[args.index("--model") + 1] = str(tmp_path / "no-such-model")  # checked before any model loads
        assert main(args) == 1
        assert "input" in capsys.readouterr().err
    assert digests(tmp_path) == before


def test_an_output_folder_that_is_a_file_fails_before_work(tmp_path, capsys):
    out = tmp_path / "frames"
    out.write_text("a file")
    args = generate_args(out)
    args[args.index("--model") + 1] = str(tmp_path / "no-such-model")
    assert main(args) == 1
    assert "is a file" in capsys.readouterr().err and out.read_text() == "a file"


@pytest.mark.parametrize("change, message", [
    (("--reference", "missing.png"), "reference image"),
    (("--poses", "nothing/*.png"), "no pose images"),
    (("--model", "no-such-model"), "does not exist"),
])
def test_failures_exit_nonzero_and_write_nothing(tmp_path, capsys, change, message):
    out = tmp_path / "out"
    args = generate_args(out)
    key, value = change
    args[args.index(key) + 1] = str(tmp_path / value)
    assert main(args) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging leftovers either


def test_unreadable_reference_is_reported(tmp_path, capsys):
    bad = tmp_path / "ref.png"
    bad.write_bytes(b"not a png")
    args = generate_args(tmp_path / "out")
    args[args.index("--reference") + 1] = str(bad)
    assert main(args) == 1
    assert "not a readable image" in capsys.readouterr().err


def test_pose_folders_sort_naturally(tmp_path):
    for name in ("pose_10.png", "pose_2.png", "pose_1.png", "readme.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_pose_images(str(tmp_path))] == ["pose_1.png", "pose_2.png", "pose_10.png"]


def test_console_entry_point_converts(tmp_path):
    target = tmp_path / "st"
    result = subprocess.run([sys.executable, "-m", "spritediff_core", "convert", str(TINY_WEIGHTS), str(target),
                             "--dtype", "fp16"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (target / "motion_module.safetensors").is_file()
    assert (target / "image_encoder" / "model.safetensors").is_file()


def test_console_script_is_installed():
    from pathlib import Path

    script = Path(sys.executable).parent / "spritediff"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "generate" in result.stdout and "draw-poses" in result.stdout


def test_core_never_imports_bpy():
    code = ("import sys, spritediff_core, spritediff_core.pipeline, spritediff_core.cli, spritediff_core.convert;"
            "assert 'bpy' not in sys.modules, 'bpy imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_memory_switches_give_the_same_frames_and_approximate_ones_run(tmp_path, capsys):
    assert main(generate_args(tmp_path / "plain", "--seed", "3")) == 0
    assert main(generate_args(tmp_path / "lean", "--seed", "3", "--sequential-guidance", "--attention-chunk-size",
                              "2", "--decode-chunk-size", "1")) == 0
    for index in range(4):
        plain = np.asarray(Image.open(tmp_path / "plain" / f"frame_{index:04d}.png")).astype(int)
        lean = np.asarray(Image.open(tmp_path / "lean" / f"frame_{index:04d}.png")).astype(int)
        assert np.abs(plain - lean).max() <= 1  # the same maths; at most a rounding step in 8 bits
    recorded = json.loads((tmp_path / "lean" / "generation.json").read_text())["settings"]["runtime"]
    assert recorded["sequential_guidance"] is True and recorded["attention_chunk_size"] == 2
    assert main(generate_args(tmp_path / "fast", "--solver", "dpm++", "--reuse-prediction-every", "2")) == 0
    # Model CPU offload has nothing to offload to on a CPU: the run goes on, and the record says it was off.
    assert main(generate_args(tmp_path / "cpu", "--enable-model-cpu-offload")) == 0
    record = json.loads((tmp_path / "cpu" / "generation.json").read_text())
    assert record["settings"]["runtime"]["enable_model_cpu_offload"] is True and record["model_cpu_offload"] is False
