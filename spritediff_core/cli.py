"""The `spritediff` command line.

    spritediff generate --model DIR --reference ref.png --poses DIR_OR_GLOB --out DIR [options]
    spritediff draw-poses POSES.json --out DIR [--width --height --stroke-scale auto|N]
    spritediff convert SRC DST [--dtype fp16]
"""

from __future__ import annotations

import argparse
import glob
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Sequence

from .errors import SpriteDiffError
from .files import save_frames

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


def _open_image(path: Path, what: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise SpriteDiffError(f"{what} {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as error:
        raise SpriteDiffError(f"{what} {path} is not a readable image ({error})") from None


def generate(args: argparse.Namespace) -> Path:
    import torch
    from PIL import Image  # noqa: F401  (fail early if Pillow is missing)

    from .pipeline import SpriteSheetPipeline

    reference = _open_image(Path(args.reference), "reference image")
    pose_paths = find_pose_images(args.poses)
    poses = [_open_image(path, "pose image") for path in pose_paths]
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)

    pipe = SpriteSheetPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    started = time.perf_counter()
    frames = pipe(
        reference, poses, width=args.width, height=args.height, num_inference_steps=args.steps,
        guidance_scale=args.guidance, seed=seed, context_frames=args.context_frames,
        context_overlap=args.context_overlap, loop=not args.no_loop,
    )
    seconds = time.perf_counter() - started
    names = save_frames(frames, args.out, {
        "model": str(Path(args.model).resolve()),
        "reference": str(Path(args.reference).resolve()),
        "poses": [str(path.resolve()) for path in pose_paths],
        "width": args.width,
        "height": args.height,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "seed": seed,
        "context_frames": args.context_frames,
        "context_overlap": args.context_overlap,
        "loop": not args.no_loop,
        "device": str(pipe.device),
        "dtype": str(pipe.dtype).removeprefix("torch."),
        "seconds": round(seconds, 3),
        "versions": {"torch": torch.__version__, "spritediff": _version()},
    })
    print(f"wrote {len(names)} frames to {args.out}")
    return Path(args.out)


def convert(args: argparse.Namespace) -> Path:
    from .convert import convert_weights
    from .devices import resolve_dtype

    import torch

    dtype = resolve_dtype(args.dtype, torch.device("cpu")) if args.dtype else None
    destination = convert_weights(args.source, args.destination, dtype)
    print(f"wrote safetensors weights to {destination}")
    return destination


def draw_poses(args: argparse.Namespace) -> Path:
    from .drawing import write_pose_sequence
    from .poses import PoseSequence

    sequence = PoseSequence.load(args.poses)
    width, height = args.width, args.height
    if (width is None) != (height is None):
        canvas_width, canvas_height = sequence.canvas_size
        width = width or round(height * canvas_width / canvas_height)
        height = height or round(width * canvas_height / canvas_width)
    names = write_pose_sequence(sequence, args.out, width, height, stroke_scale=args.stroke_scale)
    print(f"wrote {len(names)} pose images to {args.out}")
    return Path(args.out)


def _stroke_scale(text: str):
    if text == "auto":
        return text
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be 'auto' or a positive number")
    return value


def _version() -> str:
    from . import __version__

    return __version__


def _positive_multiple_of_8(text: str) -> int:
    value = int(text)
    if value <= 0 or value % 8:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 8, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spritediff", description="Sprite frames from a picture and poses.")
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="generate one frame per pose image")
    gen.add_argument("--model", required=True, help="a Moore-AnimateAnyone pretrained_weights/ folder")
    gen.add_argument("--reference", required=True, help="the character picture (RGBA is composited onto black)")
    gen.add_argument("--poses", required=True, help="a folder of pose images, or a glob such as 'poses/*.png'")
    gen.add_argument("--out", required=True, help="output folder for frame_NNNN.png and generation.json")
    gen.add_argument("--width", type=_positive_multiple_of_8, default=512)
    gen.add_argument("--height", type=_positive_multiple_of_8, default=512)
    gen.add_argument("--steps", type=int, default=25)
    gen.add_argument("--guidance", type=float, default=3.5)
    gen.add_argument("--seed", type=int, default=None, help="default: a random seed, recorded in generation.json")
    gen.add_argument("--context-frames", type=int, default=24)
    gen.add_argument("--context-overlap", type=int, default=4)
    gen.add_argument("--no-loop", action="store_true", help="one-shot motion: context windows never wrap round")
    gen.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    gen.add_argument("--dtype", default=None, help="fp16, bf16 or fp32 (default: fp16 on CUDA, else fp32)")
    gen.set_defaults(run=generate)

    draw = commands.add_parser("draw-poses", help="draw an OpenPose JSON sequence as DWPose pose images")
    draw.add_argument("poses", help="OpenPose JSON: a spritediff sequence, a list of frames, or one frame")
    draw.add_argument("--out", required=True, help="output folder for pose_NNNN.png and poses.json")
    draw.add_argument("--width", type=int, default=None, help="default: the JSON's canvas width")
    draw.add_argument("--height", type=int, default=None, help="default: the JSON's canvas height")
    draw.add_argument("--stroke-scale", type=_stroke_scale, default="auto",
                      help="'auto': strokes scale with the shorter side / 512 (DWPose exactly at 512); "
                           "1: DWPose's pixel sizes at any canvas size")
    draw.set_defaults(run=draw_poses)

    conv = commands.add_parser("convert", help="rewrite a weights folder as safetensors")
    conv.add_argument("source", help="a Moore-AnimateAnyone pretrained_weights/ folder")
    conv.add_argument("destination", help="a new folder")
    conv.add_argument("--dtype", default=None, help="cast floating-point weights, e.g. fp16")
    conv.set_defaults(run=convert)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command: 0 on success, 1 with a one-line message for errors spritediff reports."""
    try:
        args.run(args)
    except SpriteDiffError as error:
        print(f"spritediff: error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
