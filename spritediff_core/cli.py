"""The `spritediff` command line.

    spritediff generate [--model DIR] --reference ref.png --poses DIR_OR_GLOB --out DIR [options]
    spritediff pack FRAMES_DIR... --out DIR [--format texturepacker-hash|texturepacker-array|aseprite|godot]
    spritediff draw-poses POSES.json --out DIR [--width --height --stroke-scale auto|N]
    spritediff convert SRC DST [--dtype fp16]
    spritediff train --stage 0|1|2 --data DIR --out DIR (--init WEIGHTS_DIR | --config mini) [options]
"""

from __future__ import annotations

import argparse
import glob
import math
import re
import sys
import time
from pathlib import Path
from typing import Sequence

from .errors import InvalidInputError, SpriteDiffError, first_line
from .settings import (
    GenerationSettings,
    add_setting_argument,
    add_settings_arguments,
    check_runtime_settings,
    read_settings_file,
    settings_from_args,
)
from .staged_writes import MANIFEST, add_output_arguments, check_output_folder, open_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def find_pose_images(spec: str) -> list[Path]:
    """Pose images from a folder (every image in it) or a glob pattern, in natural order (pose_2 < pose_10)."""
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    else:
        found = [Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise SpriteDiffError(f"no pose images (.png, .jpg, .webp, .bmp) found at {spec!r}")
    return sorted(found, key=_natural_key)


def requested_settings(args: argparse.Namespace) -> GenerationSettings:
    """A replayed `--settings` file (or the defaults), with the settings flags given on top; checked here,
    before any long work."""
    base = read_settings_file(args.settings) if getattr(args, "settings", None) else GenerationSettings()
    return settings_from_args(args, base)


def poses_loop(poses: str) -> bool | None:
    """The cycle/one-shot flag a pose folder records (`poses.json`, written by draw-poses and the add-on)."""
    import json

    recorded = Path(poses) / "poses.json"
    if not recorded.is_file():
        return None
    try:
        loop = json.loads(recorded.read_text(encoding="utf-8")).get("loop")
    except (ValueError, AttributeError):
        raise SpriteDiffError(f"{recorded} is not a valid pose sequence") from None
    return loop if isinstance(loop, bool) else None


def pose_folder(spec: str) -> Path:
    """The folder the pose images come from (the folder itself, or a glob's folder)."""
    path = Path(spec)
    return path if path.is_dir() else path.parent


def resolve_loop(setting: str, recorded: bool | None) -> bool:
    """The loop setting as the pipeline's flag; "auto" follows the animation (a cycle when it says nothing)."""
    if setting == "auto":
        return True if recorded is None else recorded
    return setting == "cycle"


def generate(args: argparse.Namespace) -> Path:
    import torch
    from PIL import Image  # noqa: F401  (fail early if Pillow is missing)

    from .output_layout import FRAMES, frame_names, save_frames
    from .pipeline import load_pipeline
    from .weights import generation_guidance, generation_size, locate_weights, resolve_model

    settings = requested_settings(args)
    sampling, runtime = settings.sampling, settings.runtime
    check_runtime_settings(runtime)
    reference = open_image(Path(args.reference), "reference image")
    pose_paths = find_pose_images(args.poses)
    poses = [open_image(path, "pose image") for path in pose_paths]
    loop = resolve_loop(sampling.loop, poses_loop(args.poses))
    model = resolve_model(args.model)
    inputs = (pose_folder(args.poses), Path(args.reference), model)
    check_output_folder(args.out, inputs, keep_other_files=args.add_to_folder,
                        planned=[*frame_names(len(poses)), MANIFEST], kind=FRAMES)
    locate_weights(model)
    width, height = generation_size(model, sampling.width, sampling.height)
    guidance_scale = generation_guidance(model, sampling.guidance_scale)
    # Recorded as used: a replay of this file gives these frames whatever the defaults become.
    settings = settings.with_flat({"width": width, "height": height, "guidance_scale": guidance_scale,
                                   "loop": "cycle" if loop else "one-shot"})

    pipe = load_pipeline(model, runtime)
    started = time.perf_counter()
    frames = pipe(
        reference, poses, width=width, height=height, num_inference_steps=sampling.num_inference_steps,
        guidance_scale=guidance_scale, seed=sampling.seed, context_frames=sampling.context_frames,
        context_overlap=sampling.context_overlap, loop=loop, loop_mode=sampling.loop_mode, options=runtime,
    )
    seconds = time.perf_counter() - started
    names = save_frames(frames, args.out, {
        "model": str(model.resolve()),
        "reference": str(Path(args.reference).resolve()),
        "poses": [str(path.resolve()) for path in pose_paths],
        "fps": args.fps,
        "loop": loop,
        "settings": settings.to_dict(),
        "device": str(pipe.device),
        "dtype": str(pipe.dtype).removeprefix("torch."),
        "model_cpu_offload": pipe.offloaded,
        "seconds": round(seconds, 3),
        "versions": {"torch": torch.__version__, "spritediff": _version()},
    }, inputs, keep_other_files=args.add_to_folder)
    print(f"wrote {len(names)} frames to {args.out}")
    return Path(args.out)


def convert(args: argparse.Namespace) -> Path:
    import torch

    from .convert import convert_weights
    from .devices import resolve_dtype

    dtype = resolve_dtype(args.dtype, torch.device("cpu")) if args.dtype else None
    destination = convert_weights(args.source, args.destination, dtype)
    print(f"wrote safetensors weights to {destination}")
    return destination


def draw_poses(args: argparse.Namespace) -> Path:
    from .drawing import write_pose_sequence
    from .poses import PoseSequence

    sequence = PoseSequence.load(args.poses)
    width, height = args.width, args.height
    for option, value in (("--width", width), ("--height", height)):
        if value is not None and value < 1:
            raise InvalidInputError(f"{option} must be at least 1 pixel, got {value}")
    if (width is None) != (height is None):
        canvas_width, canvas_height = sequence.canvas_size
        width = width or round(height * canvas_width / canvas_height)
        height = height or round(width * canvas_height / canvas_width)
    names = write_pose_sequence(sequence, args.out, width, height, stroke_scale=args.stroke_scale,
                                inputs=(Path(args.poses),), keep_other_files=args.add_to_folder)
    print(f"wrote {len(names)} pose images to {args.out}")
    return Path(args.out)


def _read_generation_record(folder: Path) -> dict:
    import json

    manifest = folder / "generation.json"
    if manifest.is_file():
        try:
            record = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            raise SpriteDiffError(f"{manifest} is not valid JSON") from None
        if not isinstance(record, dict):
            raise SpriteDiffError(f"{manifest} is not a spritediff record (expected a JSON object)")
        return record
    return {}


def frames_per_second(text) -> float:
    """A playback rate: a finite number above 0 (at most 1000)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not (0 < value <= 1000):
        raise argparse.ArgumentTypeError(f"must be a number of frames per second above 0 (at most 1000), "
                                         f"got {text!r}")
    return value


def file_name(text: str) -> str:
    """A name that becomes a file name inside the output folder: no folders, nothing hidden or empty."""
    if not text or text in (".", "..") or any(c in text for c in '/\\:*?"<>|\0') or text.startswith("."):
        raise argparse.ArgumentTypeError(f"must be a plain file name (no folders, not hidden), got {text!r}")
    return text


SHEET = "sheet"  # the kind of outputs `pack` writes (see staged_writes)


def pack(args: argparse.Namespace) -> Path:
    """Frame folders (one animation each) -> one transparent, anchored, packed sheet with engine metadata."""
    from .atlas import Animation
    from .sheet import write_sheet
    from .staged_writes import staged_directory, write_json

    if args.name and len(args.name) != len(args.frames_dirs):
        raise SpriteDiffError(f"--name was given {len(args.name)} times for {len(args.frames_dirs)} folders")
    packing = requested_settings(args).packing
    inputs = [Path(d) for d in args.frames_dirs] + [Path(p) for p in (args.reference, args.palette_image) if p]
    check_output_folder(args.out, inputs, keep_other_files=args.add_to_folder, kind=SHEET)
    animations, reference_path = [], args.reference
    for index, folder in enumerate(Path(d) for d in args.frames_dirs):
        if not folder.is_dir():
            raise SpriteDiffError(f"frames folder {folder} does not exist")
        recorded = _read_generation_record(folder)
        images = [p for p in find_pose_images(str(folder))]
        frames = [open_image(path, "frame") for path in images]
        name = args.name[index] if args.name else recorded.get("animation") or folder.name
        if name == "frames" and folder.parent.name:
            name = folder.parent.name  # the add-on's <output>/<action>/frames layout
        try:
            name = file_name(str(name))
        except argparse.ArgumentTypeError as error:
            raise SpriteDiffError(f"animation name of {folder}: {error}; give one with --name") from None
        try:
            fps = args.fps or frames_per_second(recorded.get("fps", 8.0))
        except argparse.ArgumentTypeError as error:
            raise SpriteDiffError(f"{folder / MANIFEST}: fps {error}") from None
        loop = resolve_loop(args.loop or "auto", recorded.get("loop") if isinstance(recorded.get("loop"), bool)
                            else None)
        animations.append(Animation(name, frames, fps, loop))
        reference_path = reference_path or recorded.get("reference")
    reference = open_image(Path(reference_path), "reference image") if reference_path else None
    palette_image = open_image(Path(args.palette_image), "palette image") if args.palette_image else None
    with staged_directory(args.out, inputs, keep_other_files=args.add_to_folder, kind=SHEET) as staging:
        atlas, written = write_sheet(animations, staging, args.basename, packing, reference, palette_image)
        write_json(staging / "generation.json", {"files": [p.name for p in written],
                                                 "settings": {"packing": packing.to_dict()}})
    print(f"packed {len(atlas.frames)} frames of {len(animations)} animation(s) into {len(atlas.pages)} "
          f"page(s) in {args.out}")
    return Path(args.out)


def stroke_scale(text: str):
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number above 0 (at most 100), got {text!r}")
    return value


def _version() -> str:
    from . import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spritediff", description="Sprite frames from a picture and poses.")
    parser.add_argument("--debug", action="store_true", help="show a traceback for unexpected errors")
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="generate one frame per pose image")
    gen.add_argument("--model", default=None,
                     help="a Moore-AnimateAnyone pretrained_weights/ folder (default: the bundled spritediff-mini)")
    gen.add_argument("--reference", required=True, help="the character picture (RGBA is composited onto black)")
    gen.add_argument("--poses", required=True, help="a folder of pose images, or a glob such as 'poses/*.png'")
    add_output_arguments(gen, "output folder for frame_NNNN.png and generation.json")
    gen.add_argument("--fps", type=frames_per_second, default=8.0,
                     help="playback rate, recorded for packing (default 8)")
    gen.add_argument("--settings", metavar="JSON",
                     help="replay the settings recorded in a generation.json (flags given here override them)")
    add_settings_arguments(gen, "sampling", "runtime")
    gen.set_defaults(run=generate)

    draw = commands.add_parser("draw-poses", help="draw an OpenPose JSON sequence as DWPose pose images")
    draw.add_argument("poses", help="OpenPose JSON: a spritediff sequence, a list of frames, or one frame")
    add_output_arguments(draw, "output folder for pose_NNNN.png and poses.json")
    draw.add_argument("--width", type=int, default=None, help="default: the JSON's canvas width")
    draw.add_argument("--height", type=int, default=None, help="default: the JSON's canvas height")
    draw.add_argument("--stroke-scale", type=stroke_scale, default="auto",
                      help="'auto': strokes scale with the shorter side / 512 (DWPose exactly at 512); "
                           "1: DWPose's pixel sizes at any canvas size")
    draw.set_defaults(run=draw_poses)

    packer = commands.add_parser("pack", help="pack frame folders into a sprite sheet with engine metadata")
    packer.add_argument("frames_dirs", nargs="+", metavar="FRAMES_DIR", help="one folder of frames per animation")
    add_output_arguments(packer, "output folder")
    packer.add_argument("--name", action="append", type=file_name,
                        help="animation name per folder (default: folder name)")
    packer.add_argument("--basename", default="atlas", type=file_name, help="file name of the pages and metadata")
    packer.add_argument("--fps", type=frames_per_second, help="default: from generation.json, else 8")
    add_setting_argument(packer, "loop", help="cycle or one-shot (default auto: from generation.json, else cycle)")
    packer.add_argument("--reference", help="the character picture (default: from generation.json)")
    packer.add_argument("--palette-image", metavar="IMAGE",
                        help="pixel art: make the palette from this picture's colours (--palette: how many)")
    packer.add_argument("--settings", metavar="JSON", help="take the packing settings recorded in a JSON file")
    add_settings_arguments(packer, "packing")
    packer.set_defaults(run=pack)

    conv = commands.add_parser("convert", help="rewrite a weights folder as safetensors")
    conv.add_argument("source", help="a Moore-AnimateAnyone pretrained_weights/ folder")
    conv.add_argument("destination", help="a new folder")
    conv.add_argument("--dtype", default=None, help="cast floating-point weights, e.g. fp16")
    conv.set_defaults(run=convert)

    from .evaluation import add_evaluate_command  # standard library only until the command runs

    add_evaluate_command(commands)
    from .training.command import add_train_command

    add_train_command(commands)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command: 0 on success; 1 with one line on stderr for any failure (the one boundary where
    library exceptions become messages; `--debug` shows the traceback); 130 when interrupted."""
    try:
        args.run(args)
    except SpriteDiffError as error:
        print(f"spritediff: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spritediff: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("spritediff: error: out of memory: try a smaller size, fewer context_frames, or "
              "--decode-chunk-size 1 --sequential-guidance", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a read-only folder, a vanished file
        if getattr(args, "debug", False):
            raise
        where = f" ({error.filename})" if error.filename else ""
        print(f"spritediff: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001  (a library's own exception: one line, never a traceback)
        if getattr(args, "debug", False):
            raise
        print(f"spritediff: error: unexpected {type(error).__name__}: {first_line(error)} (run with --debug for "
              "the details)", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
