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
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Sequence

from .errors import SpriteDiffError
from .staged_writes import open_image

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


def generate(args: argparse.Namespace) -> Path:
    import torch
    from PIL import Image  # noqa: F401  (fail early if Pillow is missing)

    from .output_layout import save_frames
    from .pipeline import SpriteSheetPipeline
    from .weights import generation_size, resolve_model

    reference = open_image(Path(args.reference), "reference image")
    pose_paths = find_pose_images(args.poses)
    poses = [open_image(path, "pose image") for path in pose_paths]
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)

    model = resolve_model(args.model)
    args.width, args.height = generation_size(model, args.width, args.height)
    pipe = SpriteSheetPipeline.from_pretrained(model, device=args.device, dtype=args.dtype)
    options = runtime_options(args)
    apply_model_switches(pipe, args)
    started = time.perf_counter()
    frames = pipe(
        reference, poses, width=args.width, height=args.height, num_inference_steps=args.steps,
        guidance_scale=args.guidance, seed=seed, context_frames=args.context_frames,
        context_overlap=args.context_overlap, loop=not args.no_loop, options=options,
    )
    seconds = time.perf_counter() - started
    names = save_frames(frames, args.out, {
        "model": str(model.resolve()),
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
        "fps": args.fps,
        "runtime_options": {key: value for key, value in vars(options).items()},
        "cpu_offload": args.cpu_offload,
        "vae_tiling": args.vae_tiling,
        "device": str(pipe.device),
        "dtype": str(pipe.dtype).removeprefix("torch."),
        "seconds": round(seconds, 3),
        "versions": {"torch": torch.__version__, "spritediff": _version()},
    })
    print(f"wrote {len(names)} frames to {args.out}")
    return Path(args.out)


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Speed and memory switches (see RuntimeOptions); the approximate ones are marked as such."""
    group = parser.add_argument_group("speed and memory (exact unless marked)")
    group.add_argument("--decode-chunk", type=int, default=4, help="frames per VAE decode (1: least memory)")
    group.add_argument("--sequential-guidance", action="store_true",
                       help="run the two guidance halves one after the other (about half the activation memory)")
    group.add_argument("--attention-chunk", type=int, default=None, help="attention over at most N rows at once")
    group.add_argument("--cpu-offload", action="store_true",
                       help="keep models in CPU memory, each on the GPU only while it runs (needs accelerate)")
    group.add_argument("--vae-tiling", action="store_true",
                       help="tile the VAE for very large frames (changes pixels at tile seams)")
    group.add_argument("--solver", choices=("ddim", "dpm++"), default="ddim",
                       help="APPROXIMATE with dpm++: DPM-Solver++ for fewer steps (changes the output)")
    group.add_argument("--reuse-prediction-every", type=int, default=1, metavar="K",
                       help="APPROXIMATE: run the UNet only every K-th step (changes the output)")


def runtime_options(args: argparse.Namespace):
    from .pipeline import RuntimeOptions

    return RuntimeOptions(decode_chunk_size=args.decode_chunk, sequential_guidance=args.sequential_guidance,
                          attention_chunk_size=args.attention_chunk, solver=args.solver,
                          reuse_prediction_every=args.reuse_prediction_every)


def apply_model_switches(pipe, args: argparse.Namespace) -> None:
    if args.cpu_offload:
        if pipe.device.type == "cpu":
            raise SpriteDiffError("--cpu-offload needs a GPU (it keeps models in CPU memory while another runs)")
        pipe.enable_model_cpu_offload(pipe.device)
    if args.vae_tiling:
        pipe.enable_vae_tiling()


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
    if (width is None) != (height is None):
        canvas_width, canvas_height = sequence.canvas_size
        width = width or round(height * canvas_width / canvas_height)
        height = height or round(width * canvas_height / canvas_width)
    names = write_pose_sequence(sequence, args.out, width, height, stroke_scale=args.stroke_scale)
    print(f"wrote {len(names)} pose images to {args.out}")
    return Path(args.out)


def _read_settings(folder: Path) -> dict:
    import json

    manifest = folder / "generation.json"
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            raise SpriteDiffError(f"{manifest} is not valid JSON") from None
    return {}


def pack(args: argparse.Namespace) -> Path:
    """Frame folders (one animation each) -> one transparent, anchored, packed sheet with engine metadata."""
    from .atlas import Animation, PackOptions
    from .sheet import SheetOptions, write_sheet
    from .staged_writes import staged_directory

    if args.name and len(args.name) != len(args.frames_dirs):
        raise SpriteDiffError(f"--name was given {len(args.name)} times for {len(args.frames_dirs)} folders")
    animations, reference_path = [], args.reference
    for index, folder in enumerate(Path(d) for d in args.frames_dirs):
        if not folder.is_dir():
            raise SpriteDiffError(f"frames folder {folder} does not exist")
        settings = _read_settings(folder)
        images = [p for p in find_pose_images(str(folder))]
        frames = [open_image(path, "frame") for path in images]
        name = args.name[index] if args.name else settings.get("animation") or folder.name
        if name == "frames" and folder.parent.name:
            name = folder.parent.name  # the add-on's <output>/<action>/frames layout
        fps = args.fps or float(settings.get("fps", 8.0))
        loop = settings.get("loop", True) if args.loop is None else args.loop
        animations.append(Animation(name, frames, fps, bool(loop)))
        reference_path = reference_path or settings.get("reference")
    reference = open_image(Path(reference_path), "reference image") if reference_path else None
    palette = args.palette
    if palette is not None and not palette.isdigit():
        reference = open_image(Path(palette), "palette image")
        palette = "reference"
    options = SheetOptions(
        alpha=args.alpha, reference=reference, pixel_height=args.pixel_height,
        palette=int(palette) if palette and palette.isdigit() else palette, outline=args.outline,
        pack=PackOptions(layout=args.layout, columns=args.columns, padding=args.padding, extrude=args.extrude,
                         power_of_two=args.pot, max_size=args.max_size, trim=args.trim,
                         shared_anchor=not args.separate_anchors),
        format=args.format, previews=tuple(args.preview or ["gif"]),
    )
    with staged_directory(args.out) as staging:
        atlas, written = write_sheet(animations, staging, args.basename, options)
        from .staged_writes import write_json

        write_json(staging / "generation.json", {"files": [p.name for p in written], "format": args.format})
    print(f"packed {len(atlas.frames)} frames of {len(animations)} animation(s) into {len(atlas.pages)} "
          f"page(s) in {args.out}")
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
    gen.add_argument("--model", default=None,
                     help="a Moore-AnimateAnyone pretrained_weights/ folder (default: the bundled spritediff-mini)")
    gen.add_argument("--reference", required=True, help="the character picture (RGBA is composited onto black)")
    gen.add_argument("--poses", required=True, help="a folder of pose images, or a glob such as 'poses/*.png'")
    gen.add_argument("--out", required=True, help="output folder for frame_NNNN.png and generation.json")
    gen.add_argument("--width", type=_positive_multiple_of_8, default=None,
                     help="default: the model's native size (spritediff-mini: 64), else 512")
    gen.add_argument("--height", type=_positive_multiple_of_8, default=None)
    gen.add_argument("--steps", type=int, default=25)
    gen.add_argument("--guidance", type=float, default=3.5)
    gen.add_argument("--seed", type=int, default=None, help="default: a random seed, recorded in generation.json")
    gen.add_argument("--context-frames", type=int, default=24)
    gen.add_argument("--context-overlap", type=int, default=4)
    gen.add_argument("--no-loop", action="store_true", help="one-shot motion: context windows never wrap round")
    gen.add_argument("--fps", type=float, default=8.0, help="playback rate, recorded for packing (default 8)")
    gen.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    gen.add_argument("--dtype", default=None, help="fp16, bf16 or fp32 (default: fp16 on CUDA, else fp32)")
    add_runtime_arguments(gen)
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

    packer = commands.add_parser("pack", help="pack frame folders into a sprite sheet with engine metadata")
    packer.add_argument("frames_dirs", nargs="+", metavar="FRAMES_DIR", help="one folder of frames per animation")
    packer.add_argument("--out", required=True, help="output folder")
    packer.add_argument("--format", default="texturepacker-hash",
                        choices=("texturepacker-hash", "texturepacker-array", "aseprite", "godot"))
    packer.add_argument("--name", action="append", help="animation name per folder (default: folder name)")
    packer.add_argument("--basename", default="atlas", help="file name of the pages and metadata")
    packer.add_argument("--fps", type=float, help="default: from generation.json, else 8")
    loop = packer.add_mutually_exclusive_group()
    loop.add_argument("--loop", dest="loop", action="store_true", default=None)
    loop.add_argument("--no-loop", dest="loop", action="store_false")
    packer.add_argument("--layout", choices=("maxrects", "grid"), default="maxrects")
    packer.add_argument("--columns", type=int, help="grid columns")
    trim = packer.add_mutually_exclusive_group()
    trim.add_argument("--trim", dest="trim", action="store_true", default=True, help="trim frames (default)")
    trim.add_argument("--no-trim", dest="trim", action="store_false")
    packer.add_argument("--padding", type=int, default=2)
    packer.add_argument("--extrude", type=int, default=0, help="repeat edge pixels (against texture bleeding)")
    packer.add_argument("--pot", action="store_true", help="power-of-two pages")
    packer.add_argument("--max-size", type=int, default=4096, help="largest page side; more pages if needed")
    packer.add_argument("--separate-anchors", action="store_true",
                        help="anchor each animation on its own (default: one anchor for all)")
    packer.add_argument("--pixel-height", type=int, help="pixel art: scale so the character is N px tall")
    packer.add_argument("--palette", help="pixel art: N shared colours, or an image whose colours to use")
    packer.add_argument("--outline", action="store_true", help="pixel art: add a 1 px outline")
    packer.add_argument("--alpha", choices=("auto", "none", "rembg"), default="auto",
                        help="transparency: auto (remove the black background), none, or rembg if installed")
    packer.add_argument("--reference", help="the character picture (default: from generation.json)")
    packer.add_argument("--preview", action="append", choices=("gif", "apng", "webp"), default=None,
                        help="animated previews to write (repeatable; default: gif)")
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
