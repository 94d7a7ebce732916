"""`spritediff evaluate`: how well a trained model animates characters it never saw.

For every clip of every character of a held-out dataset (`spritediff_core.dataset` layout), the model
generates the clip's frames from the character's reference picture of one view and the clip's poses. Each
frame is scored against the ground-truth render (`metrics`: PSNR, SSIM, silhouette IoU), and so is the
baseline that copies the reference picture into every frame; a model that has learnt anything beats it.

Both sides are compared as the model sees pictures: composited onto black, at the generation size (ground
truth resized with area interpolation). Silhouettes: ground truth is alpha > 0.5; a prediction (generated
frame, or the copied reference) is matted as `spritediff pack` mattes frames (`matting.matte_frame` with the
reference's outline hint), then alpha > 0.5. Scores are averaged per clip, then over clips (overall, per view,
per motion), so long clips do not outweigh short ones.

Only the standard library is imported up front: the `spritediff` parser registers this command without
loading OpenCV, Pillow or torch.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .context_windows import LOOP_MODES
from .dataset import REFERENCE_VIEWS, nearest_reference
from .errors import InvalidInputError
from .settings import default_of, setting_range
from .staged_writes import MANIFEST, add_output_arguments

OUTPUT_FILES = ("metrics.json", "metrics.md", "contact_sheet.png")
NEAREST = "nearest"  # --reference-view: for each clip, the reference seen from nearest its view
METRIC_NAMES = ("psnr", "ssim", "iou")
SHEET_CLIPS = 12  # clips shown in the contact sheet
SHEET_FRAMES = 3  # frames shown per clip
SHEET_CELL = 128
SHEET_LABEL_WIDTH = 170
SHEET_HEADER = 26
SHEET_BACKGROUND = 24  # contact_sheet's background grey


@dataclass(frozen=True)
class EvaluationSettings:
    model: Path
    data: Path
    out: Path
    reference_view: str = "side"  # or NEAREST
    views: tuple[str, ...] | None = None  # None: every view
    max_clips: int | None = None
    steps: int = default_of("num_inference_steps")
    guidance: float = default_of("guidance_scale")
    seed: int = 0
    size: tuple[int, int] | None = None  # None: the model's native size, else the dataset's
    device: str | None = None
    dtype: str | None = None
    add_to_folder: bool = False  # write beside files already in `out` (never over them)
    loop_mode: str = default_of("loop_mode")

    def check(self) -> None:
        if self.reference_view not in (*REFERENCE_VIEWS, NEAREST):
            raise InvalidInputError(f"unknown reference view {self.reference_view!r}: use one of "
                                    f"{', '.join((*REFERENCE_VIEWS, NEAREST))}")
        if self.loop_mode not in LOOP_MODES:
            raise InvalidInputError(f"--loop-mode must be one of {', '.join(LOOP_MODES)}, got {self.loop_mode!r}")
        if self.views is not None and not self.views:
            raise InvalidInputError("--views is empty: name views (side,dir_045,...) or give 'all'")
        if self.max_clips is not None and self.max_clips < 1:
            raise InvalidInputError(f"--max-clips must be at least 1, got {self.max_clips}")
        for option, name, value in (("--num-inference-steps", "num_inference_steps", self.steps),
                                    ("--seed", "seed", self.seed)):
            low, high = setting_range(name)
            if not low <= value <= high:
                raise InvalidInputError(f"{option} must be from {low} to {high}, got {value}")
        if not (self.guidance == 0 or 1.0 <= self.guidance <= 30.0):
            raise InvalidInputError(f"--guidance-scale must be 0 (the model's recommended value) or >= 1.0, got "
                                    f"{self.guidance}")
        if self.size is not None:
            _check_size(self.size, "--width/--height")
        if self.device not in (None, "auto"):
            from .devices import resolve_device

            resolve_device(self.device)  # a device this machine lacks: refused before the model loads


@dataclass
class ClipResult:
    """One clip's scores (frame means) and, for clips shown in the contact sheet, a few of its pictures."""

    row: dict[str, Any]
    sheet_images: list | None = None


def _check_size(size: tuple[int, int], source: str) -> None:
    width, height = size
    if width <= 0 or height <= 0 or width % 8 or height % 8:
        raise InvalidInputError(f"generation size {width}x{height} (from {source}) must be positive multiples "
                                "of 8: give --width and --height")


def evenly_spaced(count: int, limit: int) -> list[int]:
    """Up to `limit` indices spread evenly over range(count), first and last included: a deterministic sample."""
    if count <= limit:
        return list(range(count))
    if limit == 1:
        return [0]
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def select_clips(dataset, reference_view: str, views: tuple[str, ...] | None, max_clips: int | None) -> list:
    """(character, clip) pairs to evaluate, in dataset order; errors name what is missing."""
    pairs = dataset.clips()
    if views is not None:
        present = sorted({clip.view_name for _, clip in pairs})
        unknown = [view for view in views if view not in present]
        if unknown:
            raise InvalidInputError(f"--views names {', '.join(unknown)}, which no clip in {dataset.root} has "
                                    f"(its views: {', '.join(present)})")
        pairs = [(character, clip) for character, clip in pairs if clip.view_name in views]
    if not pairs:
        raise InvalidInputError(f"no clips in {dataset.root} match --views {','.join(views or ())}")
    if reference_view == NEAREST:
        for character, clip in pairs:
            if clip.azimuth is None:
                raise InvalidInputError(f"{character.name}/{clip.name}: clip.json gives no view azimuth, so "
                                        "--reference-view nearest cannot choose a reference")
            clip_reference(character, clip, reference_view)  # raises when the character has no known view
    for character in {character.name: character for character, _ in pairs}.values():
        if reference_view != NEAREST and reference_view not in character.references:
            raise InvalidInputError(f"character {character.name} has no {reference_view!r} reference picture "
                                    f"(it has: {', '.join(character.references) or 'none'})")
    if max_clips is not None:
        pairs = [pairs[index] for index in evenly_spaced(len(pairs), max_clips)]
    return pairs


def clip_reference(character, clip, reference_view: str) -> str:
    """The reference view a clip is generated from: the one asked for, or the one nearest the clip's view."""
    if reference_view != NEAREST:
        return reference_view
    return nearest_reference(clip.azimuth, character.references)


def generation_size(settings: EvaluationSettings, pipe, dataset) -> tuple[tuple[int, int], str]:
    """(width, height) and where it came from: the flags, else the model's native size, else the dataset's."""
    if settings.size is not None:
        return settings.size, "--width/--height"
    native = getattr(pipe, "native_size", None)
    if native:
        return (int(native[0]), int(native[1])), "the model's native size"
    return dataset.size, f"the dataset's size in {dataset.root / 'dataset.json'}"


# ---------------------------------------------------------------- pictures as the model sees them
def _resized(array, size: tuple[int, int]):
    import cv2

    if (array.shape[1], array.shape[0]) == tuple(size):
        return array
    return cv2.resize(array, tuple(size), interpolation=cv2.INTER_AREA)


def on_black(image, size: tuple[int, int]):
    """(H, W, 3) uint8: the picture composited onto black, resized to `size` with area interpolation."""
    import numpy as np

    from .pipeline import flatten_onto_black

    return _resized(np.asarray(flatten_onto_black(image)), size)


def alpha_silhouette(image, size: tuple[int, int]):
    """Boolean (H, W): alpha > 0.5 at `size` (alpha resized with area interpolation first)."""
    import numpy as np

    alpha = np.asarray(image.convert("RGBA"))[..., 3].astype(np.float32) / 255.0
    return _resized(alpha, size) > 0.5


def matted_silhouette(rgb, hint):
    """Boolean (H, W): the product's matting of a picture on black (as `spritediff pack` does), alpha > 0.5."""
    import numpy as np
    from PIL import Image

    from .matting import matte_frame

    return np.asarray(matte_frame(Image.fromarray(rgb, "RGB"), hint))[..., 3] > 127.5


def pose_images(clip, size: tuple[int, int]) -> list:
    """The clip's pose images; redrawn from poses.json at `size` (strokes scaled as generation does) when the
    stored ones have another size, so strokes are never blurred by resizing."""
    from .drawing import draw_pose
    from .poses import PoseSequence
    from .staged_writes import open_image

    images = [open_image(path, "pose image").convert("RGB") for path in clip.pose_paths]
    if all(image.size == tuple(size) for image in images):
        return images
    sequence = PoseSequence.load(clip.poses_json)
    if len(sequence) != len(images):
        raise InvalidInputError(f"{clip.poses_json} has {len(sequence)} poses for {len(images)} pose images")
    return [draw_pose(frame, size[0], size[1], stroke_scale="auto") for frame in sequence.frames]


def score(prediction, truth, predicted_mask, true_mask) -> dict[str, float]:
    from .metrics import foreground_iou, psnr, ssim

    return {"psnr": psnr(prediction, truth), "ssim": ssim(prediction, truth),
            "iou": foreground_iou(predicted_mask, true_mask)}


def _frame_mean(scores: list[dict[str, float]]) -> dict[str, float]:
    return {name: sum(s[name] for s in scores) / len(scores) for name in METRIC_NAMES}


# ---------------------------------------------------------------- one clip
def evaluate_clip(pipe, character, clip, reference_view: str, size: tuple[int, int], settings: EvaluationSettings,
                  keep_sheet_images: bool) -> ClipResult:
    import numpy as np
    from PIL import Image

    from .matting import OutlineHint
    from .staged_writes import open_image

    used_view = clip_reference(character, clip, reference_view)
    reference = open_image(character.references[used_view], "reference picture")
    hint = OutlineHint.from_reference(reference)
    poses = pose_images(clip, size)
    generated = pipe(reference, poses, width=size[0], height=size[1], num_inference_steps=settings.steps,
                     guidance_scale=settings.guidance, seed=settings.seed, loop=clip.loop,
                     loop_mode=settings.loop_mode)
    copied = on_black(reference, size)
    copied_mask = matted_silhouette(copied, hint)
    model_scores, baseline_scores, truths = [], [], []
    for frame, truth_path in zip(generated, clip.frame_paths):
        truth_image = open_image(truth_path, "ground-truth frame")
        truth, true_mask = on_black(truth_image, size), alpha_silhouette(truth_image, size)
        prediction = np.asarray(frame.convert("RGB"))
        model_scores.append(score(prediction, truth, matted_silhouette(prediction, hint), true_mask))
        baseline_scores.append(score(copied, truth, copied_mask, true_mask))
        truths.append(truth)
    row = {"character": character.name, "clip": clip.name, "view": clip.view_name, "motion": clip.motion,
           "reference_view": used_view, "loop": clip.loop, "frames": len(generated),
           "model": _frame_mean(model_scores), "baseline": _frame_mean(baseline_scores)}
    if clip.loop:  # a cycle: how its wrap-around step compares with its other steps, generated and true
        from .metrics import seam_ratio

        row["seam_ratio"] = {"model": seam_ratio([np.asarray(frame.convert("RGB")) for frame in generated]),
                             "truth": seam_ratio(truths)}
    sheet_images = None
    if keep_sheet_images:
        shown = evenly_spaced(len(generated), SHEET_FRAMES)
        sheet_images = [Image.fromarray(copied, "RGB")]
        for index in shown:
            sheet_images += [poses[index], generated[index], Image.fromarray(truths[index], "RGB")]
    return ClipResult(row, sheet_images)


# ---------------------------------------------------------------- summaries
def mean_over_clips(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and the mean over clips of each clip's frame-mean scores, for the model and the baseline."""
    return {"clips": len(rows), "frames": sum(row["frames"] for row in rows),
            **{side: {name: sum(row[side][name] for row in rows) / len(rows) for name in METRIC_NAMES}
               for side in ("model", "baseline")}}


def seam_means(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean seam ratio of the generated cycles and of their ground truth, over the cycle clips where both
    are defined (`metrics.seam_ratio`); None without such clips."""
    ratios = [row["seam_ratio"] for row in rows
              if row.get("seam_ratio") and None not in row["seam_ratio"].values()]
    if not ratios:
        return None
    return {"clips": len(ratios), **{side: sum(r[side] for r in ratios) / len(ratios) for side in ("model", "truth")}}


def grouped_means(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    return {name: mean_over_clips(groups[name]) for name in sorted(groups)}


def markdown_report(report: dict[str, Any]) -> str:
    settings, means = report["settings"], report["means"]
    lines = [
        "# spritediff evaluation", "",
        f"Model `{report['model']}` on held-out data `{settings['data']}`: {report['counts']['characters']} "
        f"characters, {report['counts']['clips']} clips, {report['counts']['frames']} frames; reference view "
        f"{settings['reference_view']}, {settings['width']}x{settings['height']}, {settings['steps']} steps, "
        f"guidance {settings['guidance']}, seed {settings['seed']}, loop mode {settings['loop_mode']}.", "",
        "Mean over clips of each clip's mean over frames. *copy* is the baseline that uses the reference "
        "picture as every frame.", "",
        "| group | clips | frames | PSNR dB model | PSNR dB copy | SSIM model | SSIM copy | IoU model | IoU copy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups = [("**all**", means["overall"])]
    groups += [(f"view {name}", group) for name, group in means["per_view"].items()]
    groups += [(f"motion {name}", group) for name, group in means["per_motion"].items()]
    for label, group in groups:
        model, copy = group["model"], group["baseline"]
        lines.append(f"| {label} | {group['clips']} | {group['frames']} | {model['psnr']:.2f} | {copy['psnr']:.2f} "
                     f"| {model['ssim']:.4f} | {copy['ssim']:.4f} | {model['iou']:.4f} | {copy['iou']:.4f} |")
    seam = means.get("seam")
    if seam:
        lines += ["", f"Seam ratio of the cycles ({seam['clips']} clips; last-to-first step over the other steps, "
                      f"1 = no seam): model {seam['model']:.3f}, ground truth {seam['truth']:.3f}."]
    lines += ["", *(f"- {note}" for note in report["notes"]), ""]
    return "\n".join(lines)


def _put_text_fitted(canvas, text: str, origin: tuple[int, int], max_width: int, scale: float = 0.45) -> None:
    import cv2

    text_width = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
    scale = min(scale, scale * max_width / max(text_width, 1))
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (230, 230, 230), 1, cv2.LINE_AA)


def _enlarged_to_cell(image, cell: int):
    """Small frames blown up by a whole factor (nearest neighbour: pixels stay crisp) to fill the cell."""
    from PIL import Image

    factor = cell // max(image.size)
    if factor < 2:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def evaluation_sheet(rows: list[tuple[str, str, list]], cell: int = SHEET_CELL):
    """One row per clip (labelled character / clip): reference, then pose | generated | truth per frame,
    under a header naming the columns."""
    import numpy as np
    from PIL import Image

    from .contact_sheets import contact_sheet

    gap = 4
    cells = [("", [_enlarged_to_cell(image, cell) for image in images]) for _, _, images in rows]
    sheet = np.array(contact_sheet(cells, cell=cell, label_width=SHEET_LABEL_WIDTH, gap=gap))
    for index, (character, clip, _) in enumerate(rows):
        middle = index * (cell + gap) + cell // 2
        _put_text_fitted(sheet, character, (8, middle - 6), SHEET_LABEL_WIDTH - 12)
        _put_text_fitted(sheet, clip, (8, middle + 14), SHEET_LABEL_WIDTH - 12)
    header = np.full((SHEET_HEADER, sheet.shape[1], 3), SHEET_BACKGROUND, dtype=np.uint8)
    columns = max(len(images) for _, _, images in rows)
    titles = ["reference"] + ["pose", "generated", "truth"] * ((columns - 1) // 3)
    for column, title in enumerate(titles):
        _put_text_fitted(header, title, (SHEET_LABEL_WIDTH + column * (cell + gap) + 4, SHEET_HEADER - 8),
                         cell - 8)
    return Image.fromarray(np.vstack([header, sheet]), "RGB")


# ---------------------------------------------------------------- the command
def evaluate(settings: EvaluationSettings) -> dict[str, Any]:
    """Score the model on every selected clip and write metrics.json, metrics.md and contact_sheet.png into
    `settings.out` (all or nothing). Returns the metrics.json content. Every input is checked before the
    first generation."""
    import torch

    from . import __version__
    from .dataset import load_dataset
    from .metrics import PSNR_CAP_DB
    from .pipeline import SpriteSheetPipeline
    from .staged_writes import check_output_folder, staged_directory, write_json
    from .weights import recommended_guidance

    settings.check()
    dataset = load_dataset(settings.data)
    pairs = select_clips(dataset, settings.reference_view, settings.views, settings.max_clips)
    out = Path(settings.out)
    inputs = (settings.data, settings.model)
    check_output_folder(out, inputs, keep_other_files=settings.add_to_folder, planned=OUTPUT_FILES,
                        kind="evaluation")
    pipe = SpriteSheetPipeline.from_pretrained(settings.model, device=settings.device, dtype=settings.dtype)
    settings = replace(settings, guidance=settings.guidance or recommended_guidance(pipe.model_card))
    size, size_source = generation_size(settings, pipe, dataset)
    _check_size(size, size_source)

    shown = set(evenly_spaced(len(pairs), SHEET_CLIPS))
    rows, sheet_rows = [], []
    started = time.perf_counter()
    for index, (character, clip) in enumerate(pairs):
        clip_started = time.perf_counter()
        result = evaluate_clip(pipe, character, clip, settings.reference_view, size, settings, index in shown)
        rows.append(result.row)
        if result.sheet_images is not None:
            sheet_rows.append((character.name, clip.name, result.sheet_images))
        model, copy = result.row["model"], result.row["baseline"]
        print(f"[{index + 1}/{len(pairs)}] {character.name}/{clip.name}: model PSNR {model['psnr']:.2f} "
              f"SSIM {model['ssim']:.3f} IoU {model['iou']:.3f} | copy PSNR {copy['psnr']:.2f} "
              f"SSIM {copy['ssim']:.3f} IoU {copy['iou']:.3f} ({time.perf_counter() - clip_started:.1f} s)",
              flush=True)

    report = {
        "format": "spritediff-evaluation",
        "version": 1,
        "model": str(Path(settings.model).resolve()),
        "settings": {
            "data": str(Path(settings.data).resolve()), "reference_view": settings.reference_view,
            "views": list(settings.views) if settings.views is not None else "all",
            "max_clips": settings.max_clips, "width": size[0], "height": size[1], "size_from": size_source,
            "steps": settings.steps, "guidance": settings.guidance, "seed": settings.seed,
            "loop_mode": settings.loop_mode,
            "device": str(pipe.device), "dtype": str(pipe.dtype).removeprefix("torch."),
        },
        "counts": {"characters": len({row["character"] for row in rows}), "clips": len(rows),
                   "frames": sum(row["frames"] for row in rows)},
        "means": {"overall": mean_over_clips(rows), "per_view": grouped_means(rows, "view"),
                  "per_motion": grouped_means(rows, "motion"), "seam": seam_means(rows)},
        "clips": rows,
        "notes": [
            "Pictures are compared on black at the generation size; ground truth is resized with area "
            "interpolation.",
            f"PSNR: RGB, 8-bit, over all pixels; capped at {PSNR_CAP_DB:g} dB (identical images).",
            "SSIM: Wang et al. 2004 (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, windows inside the "
            "image), per RGB channel, averaged.",
            "IoU: ground truth alpha > 0.5 vs the prediction matted on black (spritediff's matting, reference "
            "outline hint), alpha > 0.5; two empty silhouettes count as 1.",
            "baseline: the reference picture, composited on black and resized, as every frame's prediction.",
            "Seam ratio (cycles): mean absolute difference between the last and first frame over the mean "
            "difference between the other neighbouring frames, for the generated frames and the ground truth.",
            "Reference view 'nearest': each clip gets the character's reference seen from nearest its view.",
            "Means: each clip's mean over its frames, then the mean over clips.",
        ],
        "seconds": round(time.perf_counter() - started, 3),
        "versions": {"torch": torch.__version__, "spritediff": __version__},
    }
    with staged_directory(out, inputs, keep_other_files=settings.add_to_folder, kind="evaluation") as staging:
        write_json(staging / "metrics.json", report)
        (staging / "metrics.md").write_text(markdown_report(report), encoding="utf-8")
        evaluation_sheet(sheet_rows).save(staging / "contact_sheet.png")
        write_json(staging / MANIFEST, {"files": list(OUTPUT_FILES), "command": "evaluate"})
    return report


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _view_list(text: str) -> tuple[str, ...] | None:
    if text.strip() == "all":
        return None
    return tuple(dict.fromkeys(view.strip() for view in text.split(",") if view.strip()))


def add_evaluate_command(commands) -> None:
    """Register `spritediff evaluate` on the CLI's subparsers."""
    parser = commands.add_parser("evaluate", help="score a model on held-out characters of a training dataset")
    parser.add_argument("--model", required=True, help="a pretrained_weights/ folder (e.g. a trained one)")
    parser.add_argument("--data", required=True,
                        help="a dataset folder (python -m blender_addon dataset) of characters the model never saw")
    add_output_arguments(parser, "output folder: metrics.json, metrics.md, contact_sheet.png")
    parser.add_argument("--reference-view", choices=(*REFERENCE_VIEWS, NEAREST), default="side",
                        help="which reference picture of each character the model gets; nearest: for each clip "
                             "the one seen from nearest the clip's view (default: side)")
    parser.add_argument("--views", type=_view_list, default=None, metavar="VIEW,VIEW|all",
                        help="only clips seen from these views, e.g. side,dir_045 (default: all)")
    parser.add_argument("--max-clips", type=_positive_int, default=None,
                        help="at most N clips, spread evenly over the dataset")
    parser.add_argument("--num-inference-steps", dest="steps", type=_positive_int,
                        default=default_of("num_inference_steps"))
    parser.add_argument("--guidance-scale", dest="guidance", type=float, default=default_of("guidance_scale"))
    parser.add_argument("--seed", type=int, default=0, help="the same seed for every clip (default 0)")
    parser.add_argument("--loop-mode", choices=LOOP_MODES, default=default_of("loop_mode"),
                        help=f"how cycles are denoised (default: {default_of('loop_mode')})")
    parser.add_argument("--width", type=_positive_int, default=None,
                        help="generation width (default: the model's native size, else the dataset's)")
    parser.add_argument("--height", type=_positive_int, default=None)
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--dtype", default=None, help="fp16, bf16 or fp32 (default: fp16 on CUDA, else fp32)")
    parser.set_defaults(run=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> Path:
    if (args.width is None) != (args.height is None):
        raise InvalidInputError("give both --width and --height, or neither")
    settings = EvaluationSettings(
        model=Path(args.model), data=Path(args.data), out=Path(args.out), reference_view=args.reference_view,
        views=args.views, max_clips=args.max_clips, steps=args.steps, guidance=args.guidance, seed=args.seed,
        size=(args.width, args.height) if args.width is not None else None, device=args.device, dtype=args.dtype,
        add_to_folder=args.add_to_folder, loop_mode=args.loop_mode,
    )
    report = evaluate(settings)
    model, copy = report["means"]["overall"]["model"], report["means"]["overall"]["baseline"]
    print(f"evaluated {report['counts']['clips']} clips: model PSNR {model['psnr']:.2f} SSIM {model['ssim']:.3f} "
          f"IoU {model['iou']:.3f}, copy-the-reference PSNR {copy['psnr']:.2f} SSIM {copy['ssim']:.3f} "
          f"IoU {copy['iou']:.3f}; wrote {', '.join(OUTPUT_FILES)} to {args.out}")
    return Path(args.out)
