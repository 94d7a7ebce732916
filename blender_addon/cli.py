"""Headless commands: `python -m blender_addon poses|demo ...` (and, registered by the extension,
`blender --command spritediff ...`). Exit code 0 on success, 1 on a reported error."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import bpy

from . import armature_reader as reader
from .core import SpriteDiffError, drawing, load


def _frame_range(text: str) -> tuple[int, int]:
    try:
        first, last = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A-B (two frame numbers), got {text!r}") from None
    return first, last


def _stroke_scale(text: str):
    return text if text == "auto" else float(text)


def open_blend(path: str | None) -> None:
    if path is None:
        return
    blend = Path(path)
    if not blend.is_file():
        raise SpriteDiffError(f"blend file {blend} does not exist")
    bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()), load_ui=False)


def command_poses(args: argparse.Namespace) -> None:
    open_blend(args.blend)
    scene = bpy.context.scene
    armature = reader.find_armature(args.armature)
    camera = reader.find_camera(scene, args.camera)
    action = reader.find_action(armature, args.action)
    others = [reader.find_action(armature, name) for name in args.frame_with]
    render = scene.render
    width = args.width or int(render.resolution_x * render.resolution_percentage / 100)
    height = args.height or int(render.resolution_y * render.resolution_percentage / 100)
    sampling = reader.FrameSampling(count=args.frames, frame_range=args.range)
    sequences = reader.read_pose_sequences(scene, armature, [action, *others], camera, width, height,
                                           bone_map=args.bone_map, sampling=sampling, loop=args.loop,
                                           auto_frame=not args.no_auto_frame)
    names = drawing.write_pose_sequence(sequences[0], args.out, stroke_scale=args.stroke_scale)
    print(f"wrote {len(names)} poses of {sequences[0].name!r} ({width}x{height}) to {args.out}")


def command_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(Path(args.out), model=args.model, size=args.size, steps=args.steps)


def build_parser(prog: str = "python -m blender_addon") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="spritediff headless commands")
    commands = parser.add_subparsers(dest="command", required=True)

    poses = commands.add_parser("poses", help="write an Action's pose images and OpenPose JSON")
    poses.add_argument("--blend", help="the .blend file to read (default: the open one)")
    poses.add_argument("--armature", help="armature object (default: the active or only one)")
    poses.add_argument("--action", help="Action name (default: the armature's current animation)")
    count = poses.add_mutually_exclusive_group()
    count.add_argument("--frames", type=int, help="N frames evenly sampled (a cycle never repeats frame 1)")
    count.add_argument("--range", type=_frame_range, help="every frame from A to B inclusive, e.g. 1-24")
    poses.add_argument("--camera", help="camera object (default: the scene camera)")
    poses.add_argument("--width", type=int, help="canvas width (default: the render resolution)")
    poses.add_argument("--height", type=int, help="canvas height (default: the render resolution)")
    poses.add_argument("--bone-map", help="bone map name (spritediff, rigify, mixamo, generic) or JSON path")
    loop = poses.add_mutually_exclusive_group()
    loop.add_argument("--loop", dest="loop", action="store_true", default=None, help="treat as a cycle")
    loop.add_argument("--no-loop", dest="loop", action="store_false", help="treat as a one-shot")
    poses.add_argument("--no-auto-frame", action="store_true", help="use the camera frame as it is")
    poses.add_argument("--frame-with", action="append", default=[], metavar="ACTION",
                       help="other Actions of the character that share the same framing (repeatable)")
    poses.add_argument("--stroke-scale", type=_stroke_scale, default="auto",
                       help="'auto' (shorter side / 512, DWPose's look at any size) or a number (1 = DWPose)")
    poses.add_argument("--out", required=True, help="output folder")
    poses.set_defaults(run=command_poses)

    demo = commands.add_parser("demo", help="build the demo scene, draw the presets' poses, generate frames")
    demo.add_argument("--out", default="out/demo")
    demo.add_argument("--model", help="weights folder (default: $SPRITEDIFF_MODEL_DIR, else the tiny test model)")
    demo.add_argument("--size", type=int, default=None, help="generation size (default 512, 64 for the tiny model)")
    demo.add_argument("--steps", type=int, default=None, help="denoising steps (default 25, 3 for the tiny model)")
    demo.set_defaults(run=command_demo)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m blender_addon") -> int:
    return load("cli").run_command(build_parser(prog).parse_args(argv))
