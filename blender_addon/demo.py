"""The headless demo (`python3 build.py demo`, i.e. `python -m blender_addon.demo`): rig -> five preset motions
-> pose images -> sprites. A repository tool, not part of the extension (the build leaves it out).

Builds a scene from `rigs/` (character rig, preset Actions, side camera), draws every preset's poses with one
shared framing (contact sheet), then runs Generate Sprites for each preset exactly as the add-on does
(frames, atlas + TexturePacker JSON, GIF preview, image sequence and packed atlas in the .blend), and saves
the .blend and a summary, all under the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import bpy
from PIL import Image

from spritediff_core import contact_sheets, drawing, rig, weights
from spritediff_core.settings import GenerationSettings, SamplingSettings

from . import armature_reader as reader
from . import rig_builder
from .generation import GenerateOptions, generate_one

REPOSITORY = Path(__file__).resolve().parent.parent
TINY_MODEL = REPOSITORY / "tests" / "fixtures" / "moore-tiny" / "pretrained_weights"
DEMO_REFERENCE = rig.rigs_directory() / "demo_character.png"


def bundled_or_tiny_model() -> Path:
    """The bundled spritediff-mini; the untrained test model only where a checkout lacks it (it is
    being remade with `python3 build.py train-mini`)."""
    bundled = weights.DEFAULT_MODEL
    return bundled if bundled.is_dir() else TINY_MODEL


def run_demo(out: Path, model: str | None = None, size: int | None = None, steps: int | None = None,
             reference: str | None = None) -> dict:
    started = time.perf_counter()
    model_dir = Path(model or os.environ.get("SPRITEDIFF_MODEL_DIR") or bundled_or_tiny_model())
    tiny = model_dir.resolve() == TINY_MODEL.resolve()
    size = size or (64 if tiny else weights.generation_size(model_dir, None, None)[0])
    steps = steps or (3 if tiny else 25)
    reference = Path(reference or DEMO_REFERENCE)
    out.mkdir(parents=True, exist_ok=True)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    armature, actions, camera = rig_builder.build_character_scene(scene)
    names = list(actions)
    sequences = reader.read_pose_sequences(scene, armature, list(actions.values()), camera, 512, 512)
    pose_rows = []
    for sequence in sequences:
        drawing.write_pose_sequence(sequence, out / "poses" / sequence.name)
        pose_rows.append((sequence.name, [drawing.draw_pose(f, stroke_scale="auto") for f in sequence.frames]))
    contact_sheets.contact_sheet(pose_rows).save(out / "poses_contact_sheet.png")

    frame_rows, rows = [], []
    for name in names:
        others = tuple(actions[n].name for n in names if n != name)  # one framing for the whole character
        options = GenerateOptions(model=str(model_dir), output_dir=str(out / "sprites"), armature=armature.name,
                                  action=actions[name].name, camera=camera.name, frame_with=others,
                                  reference_path=str(reference), settings=GenerationSettings(
                                      SamplingSettings(width=size, height=size, num_inference_steps=steps)))
        result = generate_one(bpy.context.scene, options, label="  ")
        paths = result["paths"]
        frames = [Image.open(p) for p in sorted(paths["frames"].glob("frame_*.png"))]
        frame_rows.append((name, frames))
        rows.append({"animation": name, "frames": len(frames), "fps": result["sequence"]["spritediff_fps"],
                     "loop": bool(result["sequence"]["spritediff_loop"]),
                     "seconds": json.loads(result["atlas"]["spritediff"])["seconds"],
                     "atlas": str(paths["atlas"].relative_to(out)), "preview": str(paths["preview"].relative_to(out))})
    contact_sheets.contact_sheet(frame_rows).save(out / "sprites_contact_sheet.png")
    directions = demo_directions(out, model_dir, armature, actions, camera, reference, size, steps)
    bpy.ops.wm.save_as_mainfile(filepath=str((out / "demo.blend").resolve()))

    summary = {"model": str(model_dir), "model_name": weights.read_model_card(model_dir).get("name"),
               "untrained_test_model": tiny, "reference": str(reference), "size": size,
               "steps": steps, "animations": rows, "directions": directions,
               "seconds": round(time.perf_counter() - started, 2)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"spritediff demo: {len(rows)} animations, {sum(r['frames'] for r in rows)} frames at {size}x{size}, "
          f"{steps} steps, in {summary['seconds']} s")
    for row in rows:
        print(f"  {row['animation']:<7} {row['frames']} frames, {row['fps']} fps, "
              f"{'cycle' if row['loop'] else 'one-shot'}, {row['seconds']} s: {row['atlas']}, {row['preview']}")
    if tiny:
        print("  NOTE: this checkout has no spritediff-mini (python3 build.py train-mini --install) and no weights "
              "were given, so this used the tiny, untrained test model: its frames are noise.")
    print(f"  walk in 8 directions ({', '.join(directions['animations'])}), one sheet: {directions['atlas']}")
    print(f"  outputs in {out}/: poses_contact_sheet.png, sprites_contact_sheet.png, directions_contact_sheet.png, "
          "poses/, sprites/, directions/, demo.blend, summary.json")
    return summary


def demo_directions(out: Path, model_dir: Path, armature, actions: dict, camera, reference: Path, size: int,
                    steps: int) -> dict:
    """The walk in 8 directions (the character turned about its root for each), into one character sheet,
    and a contact sheet of pose | frames per direction."""
    walk = actions["walk"]
    options = GenerateOptions(model=str(model_dir), output_dir=str(out / "directions"), armature=armature.name,
                              action=walk.name, camera=camera.name, directions=8, reference_path=str(reference),
                              settings=GenerationSettings(SamplingSettings(width=size, height=size,
                                                                           num_inference_steps=steps)))
    result = generate_one(bpy.context.scene, options, label="  ")
    rows = []
    for name, animation in result["run"]["animations"].items():
        frames = [Image.open(p) for p in sorted(animation["paths"]["frames"].glob("frame_*.png"))]
        poses = sorted((animation["paths"]["frames"].parent / "poses").glob("pose_*.png"))
        rows.append((name, [Image.open(poses[0]), *frames]))
    contact_sheets.contact_sheet(rows, cell=96, label_width=90).save(out / "directions_contact_sheet.png")
    sheet = result["run"]["sheet"]
    return {"animations": list(result["run"]["animations"]), "atlas": str(sheet["atlas"].relative_to(out))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blender_addon.demo",
                                     description="build the demo scene, draw the presets' poses, generate frames")
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--model",
                        help="weights folder (default: $SPRITEDIFF_MODEL_DIR, else the bundled spritediff-mini)")
    parser.add_argument("--size", type=int, default=None,
                        help="generation size (default: the model's native size, 64 for spritediff-mini; else 512)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 25, 3 for the tiny model)")
    parser.add_argument("--reference", help="character picture (default: rigs/demo_character.png)")
    parser.set_defaults(run=lambda args: run_demo(Path(args.out), model=args.model, size=args.size, steps=args.steps,
                                                  reference=args.reference))
    from spritediff_core.cli import run_command

    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
