"""The headless demo (`python3 build.py demo`): rig -> five preset motions -> pose images -> sprite frames.

Builds a scene from `rigs/` (character rig, preset Actions, side camera), reads every preset through the
camera with one shared framing, writes the pose images and a contact sheet, runs the diffusion core on each
preset, and saves the .blend, all under the output folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import bpy

from . import armature_reader as reader
from . import rig_builder
from .core import drawing, files, load, sheets

REPOSITORY = Path(__file__).resolve().parent.parent
TINY_MODEL = REPOSITORY / "tests" / "fixtures" / "moore-tiny"


def _reference_for(model: Path) -> Path:
    """The picture to animate: the model folder's demo reference if it has one, else the bundled one."""
    for candidate in (model / "demo_reference.png", model.parent / "inputs" / "ref.png",
                      TINY_MODEL / "inputs" / "ref.png"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("no demo reference picture found")


def run_demo(out: Path, model: str | None = None, size: int | None = None, steps: int | None = None) -> dict:
    from PIL import Image

    started = time.perf_counter()
    model_dir = Path(model or os.environ.get("SPRITEDIFF_MODEL_DIR") or TINY_MODEL / "pretrained_weights")
    tiny = model_dir.resolve() == (TINY_MODEL / "pretrained_weights").resolve()
    size = size or (64 if tiny else 512)
    steps = steps or (3 if tiny else 25)
    out.mkdir(parents=True, exist_ok=True)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    armature, actions, camera = rig_builder.build_character_scene(scene)
    sequences = reader.read_pose_sequences(scene, armature, list(actions.values()), camera, 512, 512)

    pose_rows = []
    for sequence in sequences:
        drawing.write_pose_sequence(sequence, out / "poses" / sequence.name)
        pose_rows.append((sequence.name, [drawing.draw_pose(f, stroke_scale="auto") for f in sequence.frames]))
    sheets.contact_sheet(pose_rows).save(out / "poses_contact_sheet.png")

    pipe = load("pipeline").SpriteSheetPipeline.from_pretrained(model_dir)
    reference_path = _reference_for(model_dir)
    reference = Image.open(reference_path)
    frame_rows, summary_rows = [], []
    for sequence in sequences:
        pose_images = [drawing.draw_pose(f, size, size, stroke_scale="auto") for f in sequence.frames]
        begun = time.perf_counter()
        frames = pipe(reference, pose_images, size, size, num_inference_steps=steps, seed=1234,
                      loop=sequence.loop)
        seconds = time.perf_counter() - begun
        files.save_frames(frames, out / "frames" / sequence.name, {
            "animation": sequence.name, "fps": sequence.fps, "loop": sequence.loop, "model": str(model_dir),
            "reference": str(reference_path), "width": size, "height": size, "num_inference_steps": steps,
            "seed": 1234, "seconds": round(seconds, 3),
        })
        frame_rows.append((sequence.name, frames))
        summary_rows.append({"animation": sequence.name, "frames": len(frames), "fps": sequence.fps,
                             "loop": sequence.loop, "seconds": round(seconds, 2)})
    sheets.contact_sheet(frame_rows).save(out / "frames_contact_sheet.png")
    bpy.ops.wm.save_as_mainfile(filepath=str((out / "demo.blend").resolve()))

    summary = {"model": str(model_dir), "untrained_test_model": tiny, "size": size, "steps": steps,
               "device": str(pipe.device), "animations": summary_rows,
               "seconds": round(time.perf_counter() - started, 2)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"spritediff demo: {len(sequences)} animations, {sum(r['frames'] for r in summary_rows)} frames "
          f"at {size}x{size}, {steps} steps on {pipe.device}, in {summary['seconds']} s")
    for row in summary_rows:
        print(f"  {row['animation']:<7} {row['frames']} frames, {row['fps']} fps, "
              f"{'cycle' if row['loop'] else 'one-shot'}, {row['seconds']} s")
    if tiny:
        print("  NOTE: no weights given (--model DIR or SPRITEDIFF_MODEL_DIR), so this used the tiny, untrained "
              "test model: its frames are noise. The poses are real.")
    print(f"  outputs: {out}/poses_contact_sheet.png, {out}/frames_contact_sheet.png, {out}/poses/, "
          f"{out}/frames/, {out}/demo.blend")
    return summary
