"""Headless commands: `python -m blender_addon poses|generate|batch|dataset ...` (and, registered by the extension,
`blender --command spritediff ...`). Exit code 0 on success, 1 on a reported error."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import bpy

from spritediff_core import farm
from spritediff_core.cli import file_name, stroke_scale
from spritediff_core.directions import COMPASS, DIRECTION_COUNTS
from spritediff_core.errors import SpriteDiffError, first_line
from spritediff_core.settings import (
    CONCERN_OF,
    GenerationSettings,
    add_setting_argument,
    add_settings_arguments,
    read_settings_file,
    settings_from_args,
)
from spritediff_core.staged_writes import add_output_arguments

from . import armature_reader as reader
from .blend_files import check_save_path, open_blend
from .generation import LOOP_FLAGS, SCENE_OPTIONS, GenerateOptions, check_direction_options, generate_one


def _frame_range(text: str) -> tuple[int, int]:
    try:
        first, last = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A-B (two frame numbers), got {text!r}") from None
    return first, last


def command_poses(args: argparse.Namespace) -> None:
    open_blend(args.blend)
    scene = bpy.context.scene
    render = scene.render
    width = args.width or int(render.resolution_x * render.resolution_percentage / 100)
    height = args.height or int(render.resolution_y * render.resolution_percentage / 100)
    sequences = reader.read_named_directions(
        scene, args.armature, args.action, args.camera, width, height, frame_with=args.frame_with,
        bone_map=args.bone_map, sampling=reader.FrameSampling(count=args.frames, frame_range=args.range),
        loop=LOOP_FLAGS[args.loop or "auto"], auto_frame=not args.no_auto_frame, directions=args.directions)
    from spritediff_core import drawing  # OpenCV: only once a command needs it
    from spritediff_core.staged_writes import check_output_folder

    if args.directions == 1:
        folders = [Path(args.out)]
    else:  # one folder per direction, named as the animation (walk_se), every one checked before the first
        folders = [Path(args.out) / sequence.name for sequence in sequences]
        for folder in folders:
            check_output_folder(folder, keep_other_files=args.add_to_folder, kind="poses")
    for sequence, folder in zip(sequences, folders):
        names = drawing.write_pose_sequence(sequence, folder, stroke_scale=args.stroke_scale,
                                            keep_other_files=args.add_to_folder)
        print(f"wrote {len(names)} poses of {sequence.name!r} ({width}x{height}) to {folder}")


def split_references(values: Sequence[str]) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """`--reference PICTURE` once, or `--reference DIRECTION=PICTURE` per direction (s=front.png e=side.png)."""
    tagged, plain = [], []
    for value in values:
        direction, equals, path = value.partition("=")
        if equals and direction.strip() in COMPASS:
            tagged.append((direction.strip(), path))
        else:
            plain.append(value)
    if plain and (tagged or len(plain) > 1):
        raise SpriteDiffError("give one --reference PICTURE, or one --reference DIRECTION=PICTURE per direction "
                              f"(directions: {', '.join(COMPASS)})")
    return (plain[0] if plain else None), tuple(tagged)


def options_from_args(args: argparse.Namespace) -> GenerateOptions:
    model = args.model or os.environ.get("SPRITEDIFF_MODEL_DIR") or ""  # "": the bundled spritediff-mini
    base = read_settings_file(args.settings) if args.settings else GenerationSettings()
    reference, direction_references = split_references(args.reference)
    return GenerateOptions(
        model=model, output_dir=args.out, armature=args.armature, action=args.action, camera=args.camera,
        bone_map=args.bone_map, frames=args.frames, frame_range=args.range, auto_frame=not args.no_auto_frame,
        frame_with=tuple(args.frame_with), reference_path=reference, preview_plane=args.preview_plane,
        add_to_folder=args.add_to_folder, directions=args.directions, mirror=args.mirror or "",
        direction_references=direction_references,
        settings=settings_from_args(args, base),
    )


# Batch keys that name files or folders: relative ones are read from the job file's folder.
JOB_PATHS = ("model", "output_dir", "reference_path")
JOB_SCENE_TYPES = {"model": str, "output_dir": str, "armature": str, "action": (str, type(None)), "camera": str,
                   "bone_map": str, "frames": int, "auto_frame": bool, "reference_path": str, "reference_image": str,
                   "preview_plane": bool, "add_to_folder": bool, "directions": int, "mirror": str}


def options_from_job(settings: dict, where: str, base_folder: Path | None = None) -> GenerateOptions:
    """A batch item's keys: the scene options of GenerateOptions and the settings, by their one name each,
    checked by type (the settings by their own checks); relative paths are taken from `base_folder`."""
    scene = {key: value for key, value in settings.items() if key in SCENE_OPTIONS}
    unknown = sorted(set(settings) - set(SCENE_OPTIONS) - set(CONCERN_OF))
    if unknown:
        raise SpriteDiffError(f"{where}: unknown settings {unknown}")
    for key, kind in JOB_SCENE_TYPES.items():
        if key in scene and (not isinstance(scene[key], kind) or (kind is int and isinstance(scene[key], bool))):
            raise SpriteDiffError(f"{where}: {key} must be {getattr(kind, '__name__', 'text')}, got {scene[key]!r}")
    if "frame_range" in scene:
        value = scene["frame_range"]
        if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)):
            raise SpriteDiffError(f"{where}: frame_range must be two frame numbers, e.g. [1, 24]; got {value!r}")
        scene["frame_range"] = tuple(value)
    if "frame_with" in scene:
        if not (isinstance(scene["frame_with"], list) and all(isinstance(v, str) for v in scene["frame_with"])):
            raise SpriteDiffError(f"{where}: frame_with must be a list of Action names")
        scene["frame_with"] = tuple(scene["frame_with"])
    if "direction_references" in scene:  # a table {direction = "picture"}
        value = scene["direction_references"]
        if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise SpriteDiffError(f"{where}: direction_references must be a table of pictures by direction, "
                                  f"e.g. {{ s = \"front.png\", e = \"side.png\" }}; got {value!r}")
        scene["direction_references"] = tuple(value.items())
    if base_folder is not None:
        for key in JOB_PATHS:
            if scene.get(key) and not Path(scene[key]).expanduser().is_absolute():
                scene[key] = str(base_folder / Path(scene[key]).expanduser())
        scene["direction_references"] = tuple(
            (direction, path if Path(path).expanduser().is_absolute() else str(base_folder / Path(path).expanduser()))
            for direction, path in scene.get("direction_references", ()))
    generation = GenerationSettings().with_flat({k: v for k, v in settings.items() if k in CONCERN_OF}, where)
    return GenerateOptions(**scene, settings=generation)


def command_generate(args: argparse.Namespace) -> None:
    options = options_from_args(args)
    pictures = [options.reference_path, *(picture for _, picture in options.direction_references)]
    save_to = check_save_path(args.save, (args.blend, *pictures))
    open_blend(args.blend)
    generate_one(bpy.context.scene, options)
    if save_to is not None:
        try:
            bpy.ops.wm.save_as_mainfile(filepath=str(save_to))
        except RuntimeError as error:
            raise SpriteDiffError(f"could not save {args.save} ({first_line(error).removeprefix('Error: ')}); "
                                  "the sprites are written") from None
        print(f"saved {args.save}")


@dataclass(frozen=True)
class BatchItem:
    """One character x Action of a job file, checked: its label, .blend file (None: the open file), options,
    and the item's flat settings as the job file gives them with every path made absolute."""

    label: str
    character: str
    blend: Path | None
    options: GenerateOptions
    settings: dict


def read_job_file(path: Path) -> dict:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpriteDiffError(f"job file {path} does not exist") from None
    except IsADirectoryError:
        raise SpriteDiffError(f"job file {path} is a folder: give a .toml file") from None
    except UnicodeDecodeError:
        raise SpriteDiffError(f"job file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise SpriteDiffError(f"job file {path} is not valid TOML ({error})") from None


def plan_batch(path: Path) -> list[BatchItem]:
    """A TOML job file ([defaults] for every item, then [[character]] tables, each with a blend file, reference
    picture and a list of actions) as one checked item per character x action, every item checked before the
    first one runs."""
    job = read_job_file(path)
    defaults = dict(job.get("defaults", {}))
    characters = job.get("character", [])
    if not characters:
        raise SpriteDiffError(f"job file {path} lists no [[character]]")
    if not isinstance(characters, list) or not all(isinstance(c, dict) for c in characters):
        raise SpriteDiffError(f"job file {path}: [[character]] must be tables")
    for character in characters:
        actions = character.get("actions")
        if actions is not None and not (isinstance(actions, list) and all(isinstance(a, str) for a in actions)):
            raise SpriteDiffError(f"job file {path}: actions must be a list of Action names, e.g. [\"Walk\"]; "
                                  f"got {actions!r}")
    pairs = [(c, a) for c in characters for a in (c.get("actions") or [None])]
    plans = []
    seen: dict[tuple[str, str | None], int] = {}
    folder = path.resolve().parent
    for number, (character, action) in enumerate(pairs, 1):
        settings = {**defaults, **{k: v for k, v in character.items() if k not in ("name", "blend", "actions")}}
        settings["action"] = action
        settings.setdefault("model", os.environ.get("SPRITEDIFF_MODEL_DIR", ""))
        name = str(character.get("name", character.get("armature", "character")))
        try:
            file_name(name)
        except argparse.ArgumentTypeError as error:
            raise SpriteDiffError(f"job file {path}: character name {error}") from None
        if (name, action) in seen:
            raise SpriteDiffError(f"job file {path}: items {seen[name, action]} and {number} are both {name} "
                                  f"{action or '(current animation)'} and would write the same folder; give each "
                                  "character its own name and each Action once")
        seen[name, action] = number
        settings["output_dir"] = str(Path(str(settings.get("output_dir", "batch"))) / name)
        options = options_from_job(settings, f"job file {path}, {name} {action or ''}".rstrip(), folder)
        blend = (folder / str(character["blend"])) if "blend" in character else None
        if blend is not None and not blend.is_file():
            raise SpriteDiffError(f"job file {path}, {name}: blend file {blend} does not exist")
        picture = options.reference_path if not options.reference_image else None
        if picture and not Path(picture).is_file():
            raise SpriteDiffError(f"job file {path}, {name}: reference picture {picture} does not exist")
        try:
            check_direction_options(options)  # the pictures per direction included
        except SpriteDiffError as error:
            raise SpriteDiffError(f"job file {path}, {name}: {error}") from None
        absolute = dict(settings)
        for key in JOB_PATHS:
            if getattr(options, key, None):
                absolute[key] = getattr(options, key)
        if options.direction_references:
            absolute["direction_references"] = dict(options.direction_references)
        plans.append(BatchItem(f"[{number}/{len(pairs)}] {name} {action or ''}: ", name, blend, options, absolute))
    return plans


def command_batch(args: argparse.Namespace) -> None:
    """Run a job file's items one after the other; a failed item is reported and the rest still run."""
    items = plan_batch(Path(args.job))
    failures = 0
    for item in items:
        try:
            if item.blend is not None:
                open_blend(str(item.blend))
            generate_one(bpy.context.scene, item.options, item.label)
        except SpriteDiffError as error:
            failures += 1
            print(f"{item.label}FAILED: {error}", file=sys.stderr)
    print(f"batch: {len(items) - failures} of {len(items)} done")
    if failures:
        raise SpriteDiffError(f"{failures} of {len(items)} batch items failed")


def farm_plan(job: Path, items: list[BatchItem]):
    """The checked batch items as a farm plan: one farm item per generated direction (a direction made by
    mirroring is written by the task of the direction it is flipped from), one character sheet per character."""
    from spritediff_core import directions as compass
    models = {item.options.model for item in items}
    roots = {str(Path(item.options.output_dir).parent) for item in items}
    if len(models) > 1 or len(roots) > 1:
        raise SpriteDiffError(f"job file {job}: a farm job has one model and one output_dir for every character "
                              "(the farm maps each as one path); set them in [defaults] only")
    farm_items, characters = [], {}
    for item in items:
        options = item.options
        if item.blend is None:
            raise SpriteDiffError(f"job file {job}, {item.character}: a farm worker has no open file; give the "
                                  "character's blend file (blend = \"hero.blend\")")
        if options.reference_image:
            raise SpriteDiffError(f"job file {job}, {item.character}: reference_image names a picture inside a "
                                  ".blend; farm workers need it as a file: give reference_path")
        names = compass.direction_names(options.directions)
        mirrors = compass.parse_mirrors(options.mirror, names)
        settings = {key: value for key, value in item.settings.items()
                    if key not in ("model", "output_dir", "action")}
        for direction in [name for name in names if name not in mirrors] or [None]:
            farm_items.append(farm.FarmItem(
                item.character, options.action, direction, str(item.blend) if item.blend else None, settings,
                tuple(target for target, source in mirrors.items() if source == direction)))
        if item.character not in characters:
            sheet_picture = options.reference_path or next(
                (path for name in compass.COMPASS for direction, path in options.direction_references
                 if direction == name), None)
            characters[item.character] = farm.FarmCharacter(item.character, sheet_picture,
                                                            options.settings.packing.to_dict())
    return farm.make_plan(job.stem, farm_items, list(characters.values()), models.pop(), roots.pop())


def command_farm_openjd(args: argparse.Namespace) -> None:
    job = Path(args.job)
    plan, table = farm_plan(job, plan_batch(job))
    written = farm.write_openjd_bundle(plan, table, Path(args.out))
    files = ", ".join(path.name for path in written.values())
    print(f"farm: {len(plan.items)} Generate tasks and {len(plan.characters)} Pack tasks, "
          f"{len(plan.paths)} input path parameters -> {Path(args.out)} ({files})")


def command_farm_flamenco(args: argparse.Namespace) -> None:
    job = Path(args.job)
    plan, _ = farm_plan(job, plan_batch(job))
    written = farm.write_flamenco_job(plan, Path(args.out), priority=args.priority)
    print(f"farm: {len(plan.items)} generate tasks and {len(plan.characters)} pack tasks -> "
          f"{written['flamenco_job.json']} (POST it to the Flamenco Manager's /api/v3/jobs)")


def _on_this_worker(plan, args: argparse.Namespace):
    """A function giving a plan's path reference as the path on this worker (its --path values first)."""
    overrides = farm.parse_path_overrides(args.path)
    folder = Path(args.plan).resolve().parent
    return lambda reference: farm.resolve_path(reference, plan.paths, overrides, folder)


def _farm_settings(plan, args: argparse.Namespace, item) -> dict:
    """An item's settings with its path references resolved for this worker."""
    local = _on_this_worker(plan, args)
    resolved = dict(item.settings)
    for key in farm.PATH_SETTINGS:
        if resolved.get(key):
            resolved[key] = local(resolved[key])
    if resolved.get("direction_references"):
        resolved["direction_references"] = {direction: local(path)
                                            for direction, path in resolved["direction_references"].items()}
    resolved["action"] = item.action
    resolved["model"] = args.model if args.model is not None else plan.model
    resolved["output_dir"] = str(Path(args.out or plan.output_dir) / item.character)
    return resolved


@contextmanager
def _reported_as(where: str):
    """A farm task's first line names its item; its failure says which item failed."""
    print(f"spritediff {where}", flush=True)
    try:
        yield
    except SpriteDiffError as error:
        raise SpriteDiffError(f"{where} failed: {error}") from None


def command_farm_task(args: argparse.Namespace) -> None:
    """One Generate task: one item of the plan. Rerun, it rewrites its own outputs the same way."""
    plan = farm.read_plan(args.plan)
    item = plan.item(args.item)
    where = f"farm item {args.item} of {len(plan.items)} ({item.label})"
    with _reported_as(where):
        options = options_from_job(_farm_settings(plan, args, item), where)
        blend = _on_this_worker(plan, args)(item.blend)
        if blend is not None and Path(bpy.data.filepath or ".").resolve() != Path(blend).resolve():
            open_blend(blend)  # (Flamenco's Blender command has opened it already)
        generate_one(bpy.context.scene, options, f"{item.label}: ", only_direction=item.direction,
                     character_sheet=False)


def command_farm_pack(args: argparse.Namespace) -> None:
    """One Pack task: the character's sheet from every animation its Generate tasks wrote."""
    from spritediff_core.output_layout import CHARACTER_SHEET_FOLDER, save_character_sheet
    from spritediff_core.staged_writes import open_image

    plan = farm.read_plan(args.plan)
    character = plan.character(args.character)
    where = f"farm pack of {character.name}"
    with _reported_as(where):
        folder = Path(args.out or plan.output_dir) / character.name
        packing = GenerationSettings().with_flat(character.packing, where).packing
        picture = _on_this_worker(plan, args)(character.reference)
        reference = open_image(picture, "reference picture").convert("RGB") if picture else None
        paths = save_character_sheet(folder, character.name, packing, reference)
    print(f"{character.name}: sheet of {len(paths['animations'])} animations -> {folder / CHARACTER_SHEET_FOLDER}")


def command_dataset(args: argparse.Namespace) -> None:
    from .dataset import DatasetOptions, run_dataset

    run_dataset(DatasetOptions(out=args.out, characters=args.characters or 0, size=args.size,
                               directions=args.directions, clips=args.clips, seed=args.seed, first=args.first,
                               blend=args.blend, armature=args.armature, actions=tuple(args.actions or ())))


def add_scene_arguments(parser: argparse.ArgumentParser) -> None:
    """What to read from the scene: shared by `poses` and `generate`."""
    parser.add_argument("--blend", help="the .blend file to read (default: the open one)")
    parser.add_argument("--armature", help="armature object (default: the active or only one)")
    parser.add_argument("--action", help="Action name (default: the armature's current animation)")
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--frames", type=int, help="N frames evenly sampled (a cycle never repeats frame 1)")
    count.add_argument("--range", type=_frame_range, help="every frame from A to B inclusive, e.g. 1-24")
    parser.add_argument("--camera", help="camera object (default: the scene camera)")
    parser.add_argument("--bone-map", help="bone map name (spritediff, rigify, mixamo, generic) or JSON path")
    parser.add_argument("--no-auto-frame", action="store_true", help="use the camera frame as it is")
    parser.add_argument("--frame-with", action="append", default=[], metavar="ACTION",
                        help="other Actions of the character that share the same framing (repeatable)")
    parser.add_argument("--directions", type=int, choices=DIRECTION_COUNTS, default=1,
                        help="1: the camera's view; 4 (s, e, n, w) or 8 (s, se, e, ne, n, nw, w, sw): the character "
                             "turned about its root for each, named by the way it faces on screen (s: towards "
                             "the viewer, e: screen right); one framing for all")


def build_parser(prog: str = "python -m blender_addon") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="spritediff headless commands")
    parser.add_argument("--debug", action="store_true", help="show a traceback for unexpected errors")
    commands = parser.add_subparsers(dest="command", required=True)

    poses = commands.add_parser("poses", help="write an Action's pose images and OpenPose JSON")
    add_scene_arguments(poses)
    add_output_arguments(poses, "output folder for pose_NNNN.png and poses.json")
    poses.add_argument("--width", type=int, help="canvas width (default: the render resolution)")
    poses.add_argument("--height", type=int, help="canvas height (default: the render resolution)")
    add_setting_argument(poses, "loop", help="cycle, one-shot, or auto (default): from the Action")
    poses.add_argument("--stroke-scale", type=stroke_scale, default="auto",
                       help="'auto' (shorter side / 512, DWPose's look at any size) or a number (1 = DWPose)")
    poses.set_defaults(run=command_poses)

    gen = commands.add_parser("generate", help="generate sprites for an Action (frames, atlas, .blend data)")
    add_scene_arguments(gen)
    add_output_arguments(gen, "output folder (one subfolder per Action)")
    gen.add_argument("--model",
                      help="weights folder (default: $SPRITEDIFF_MODEL_DIR, else the bundled spritediff-mini)")
    gen.add_argument("--reference", required=True, action="append", metavar="[DIRECTION=]PICTURE",
                     help="the character picture; with --directions, one per direction you have (s=front.png "
                          "e=side.png n=back.png, repeated), each used for the directions nearest to it")
    gen.add_argument("--mirror", metavar="FROM:TO[,...]",
                     help="with --directions: make these directions by flipping others instead of generating "
                          "them, e.g. e:w,ne:nw,se:sw (recorded in the metadata; left and right swap with it)")
    gen.add_argument("--preview-plane", action="store_true", help="add a plane playing the frames")
    gen.add_argument("--save", help="save the .blend with the results to this path")
    gen.add_argument("--settings", metavar="JSON",
                     help="replay the settings recorded in a generation.json (flags given here override them)")
    add_settings_arguments(gen, "sampling", "runtime", "packing")
    gen.set_defaults(run=command_generate)

    batch = commands.add_parser("batch", help="run a TOML job file: characters x actions")
    batch.add_argument("job", help="job file (see README)")
    batch.set_defaults(run=command_batch)

    farm_parser = commands.add_parser("farm", help="run a job file on a render farm (OpenJD / Deadline Cloud, "
                                                   "Flamenco), and the farm's tasks")
    farm_commands = farm_parser.add_subparsers(dest="farm_command", required=True)
    openjd = farm_commands.add_parser("openjd", help="write an Open Job Description job bundle for a job file")
    openjd.add_argument("job", help="batch job file (the one `batch` runs)")
    openjd.add_argument("--out", required=True, help="bundle folder (plan.json, template.json, asset_references.json)")
    openjd.set_defaults(run=command_farm_openjd)
    flamenco = farm_commands.add_parser("flamenco", help="write a Flamenco job (for the spritediff job type)")
    flamenco.add_argument("job", help="batch job file (the one `batch` runs)")
    flamenco.add_argument("--out", required=True, help="folder for plan.json and the job submission JSON")
    flamenco.add_argument("--priority", type=int, default=50, help="Flamenco job priority (0-100)")
    flamenco.set_defaults(run=command_farm_flamenco)
    for name, helptext, runner in (("task", "run one Generate item of a farm plan", command_farm_task),
                                   ("pack", "build one character's sheet from a farm plan", command_farm_pack)):
        task = farm_commands.add_parser(name, help=helptext)
        task.add_argument("plan", help="the plan.json the farm command wrote")
        if name == "task":
            task.add_argument("--item", type=int, required=True, help="item number, from 1")
        else:
            task.add_argument("--character", required=True, help="character name")
        task.add_argument("--model", help="the weights folder on this worker (default: the plan's)")
        task.add_argument("--out", help="the output folder on this worker (default: the plan's)")
        task.add_argument("--path", action="append", default=[], metavar="NAME=PATH",
                          help="this worker's path for one of the plan's path parameters (repeatable)")
        task.set_defaults(run=runner)

    dataset = commands.add_parser("dataset", help="render training data: procedural characters or a .blend's own")
    dataset.add_argument("--characters", type=int, help="number of procedural characters")
    dataset.add_argument("--blend", help="render this file's character instead (never saved)")
    dataset.add_argument("--armature", help="with --blend: the character's armature object")
    dataset.add_argument("--actions", nargs="+", help="with --blend: Actions (default: all that animate it)")
    dataset.add_argument("--out", required=True, help="dataset folder (an existing dataset is resumed)")
    dataset.add_argument("--size", type=int, default=128, help="square render size in pixels")
    dataset.add_argument("--directions", type=int, default=8, help="camera directions around the character")
    dataset.add_argument("--clips", type=int, default=8, help="clips per procedural character")
    dataset.add_argument("--seed", type=int, default=0)
    dataset.add_argument("--first", type=int, default=0, help="index of the first procedural character")
    dataset.set_defaults(run=command_dataset)

    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m blender_addon") -> int:
    from spritediff_core import cli as core_cli

    return core_cli.run_command(build_parser(prog).parse_args(argv))
