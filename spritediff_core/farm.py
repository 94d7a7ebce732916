"""Batch jobs on a render farm: a batch job file resolved into a farm plan (one item per character, Action and
generated direction), and that plan as an Open Job Description job bundle (AWS Deadline Cloud, `openjd run`)
or a Flamenco job (the `spritediff` job type, `spritediff_core/flamenco/spritediff.js`).

The plan (`plan.json`) lists every item with its settings, and every file it reads by the name of a path
parameter ("Blend1", "Reference2" or "Inputs1/hero.blend"), so that the farm's path mapping can hand each worker
its own path for each: the task's command line gives `--path NAME=VALUE` for every one, else the plan's own value
(relative to the plan's folder when the file lies beside or below it) is used. Pure data: no bpy.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import InvalidInputError

PLAN_FORMAT = 1
PLAN_FILE = "plan.json"
FARM_BUNDLE = "farm bundle"  # the kind of outputs a farm command writes (see staged_writes)
FLAMENCO_JOB_TYPE = Path(__file__).parent / "flamenco" / "spritediff.js"
# Open Job Description 2023-09 limits (the specification's base limits).
OPENJD_MAX_PARAMETERS = 50
# Job parameters the template always has: the plan, the model folder, the output folder, the Blender command.
FIXED_PARAMETERS = ("Plan", "ModelDir", "OutputDir", "Blender")


@dataclass(frozen=True)
class FarmItem:
    """One task of the Generate step: one character's Action in one generated direction (None: the camera's own
    view), with the batch item's settings (paths in them as path references, see `PathTable`)."""

    character: str
    action: str | None
    direction: str | None
    blend: str | None  # path reference; None: the file Blender opened (farm_plan requires one)
    settings: dict[str, Any]
    mirrors: tuple[str, ...] = ()  # directions this task also writes by flipping its own frames

    @property
    def label(self) -> str:
        parts = [self.character, self.action or "(current animation)"]
        if self.direction:
            parts.append(self.direction)
        return " ".join(parts)


@dataclass(frozen=True)
class FarmCharacter:
    """One task of the Pack step: the character sheet of every animation in the character's output folder."""

    name: str
    reference: str | None  # path reference of the picture that finishes the frames (outline, palette)
    packing: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FarmPlan:
    name: str
    items: tuple[FarmItem, ...]
    characters: tuple[FarmCharacter, ...]
    paths: dict[str, str]  # path parameter name -> path (absolute, or relative to the plan's folder)
    model: str  # the model folder ("" for the bundled spritediff-mini)
    output_dir: str  # absolute: each character writes into output_dir/<character>

    def to_json(self) -> dict[str, Any]:
        return {"spritediff_farm_plan": PLAN_FORMAT, "name": self.name, "model": self.model,
                "output_dir": self.output_dir, "paths": dict(self.paths),
                "items": [asdict(item) | {"mirrors": list(item.mirrors)} for item in self.items],
                "characters": [asdict(character) for character in self.characters]}

    @classmethod
    def from_json(cls, content: Any, where: str) -> "FarmPlan":
        try:
            if content.get("spritediff_farm_plan") != PLAN_FORMAT:
                raise InvalidInputError(f"{where} is not a spritediff farm plan (format {PLAN_FORMAT})")
            items = tuple(FarmItem(**{**item, "mirrors": tuple(item.get("mirrors", ()))}) for item in content["items"])
            characters = tuple(FarmCharacter(**character) for character in content["characters"])
            return cls(str(content["name"]), items, characters, dict(content["paths"]), str(content["model"]),
                       str(content["output_dir"]))
        except (AttributeError, KeyError, TypeError) as error:
            raise InvalidInputError(f"{where} is not a readable spritediff farm plan ({error})") from None

    def item(self, number: int) -> FarmItem:
        if not 1 <= number <= len(self.items):
            raise InvalidInputError(f"item {number} does not exist: the plan has items 1 to {len(self.items)}")
        return self.items[number - 1]

    def character(self, name: str) -> FarmCharacter:
        for character in self.characters:
            if character.name == name:
                return character
        raise InvalidInputError(f"character {name!r} is not in the plan ({', '.join(c.name for c in self.characters)})")


# ---------------------------------------------------------------- path parameters
class PathTable:
    """Input files as path parameters: one per distinct file while they fit in OpenJD's parameter limit,
    else one per distinct folder (a reference is then "Inputs2/hero.blend")."""

    def __init__(self, blends: Iterable[str], references: Iterable[str]) -> None:
        blends, references = _unique(blends), _unique(references)
        room = OPENJD_MAX_PARAMETERS - len(FIXED_PARAMETERS)
        self.parameters: dict[str, str] = {}
        self._reference: dict[str, str] = {}
        if len(blends) + len(references) <= room:
            for prefix, paths in (("Blend", blends), ("Reference", references)):
                for number, path in enumerate(paths, 1):
                    self.parameters[f"{prefix}{number}"] = path
                    self._reference[path] = f"{prefix}{number}"
            self.per_folder = False
        else:
            folders = _unique(str(Path(path).parent) for path in [*blends, *references])
            if len(folders) > room:
                raise InvalidInputError(
                    f"the job's input files lie in {len(folders)} folders, and Open Job Description allows "
                    f"{room} path parameters besides the plan, model and output: gather the .blend files and "
                    "pictures into fewer folders, or split the job file")
            for number, folder in enumerate(folders, 1):
                self.parameters[f"Inputs{number}"] = folder
            by_folder = {folder: name for name, folder in self.parameters.items()}
            for path in [*blends, *references]:
                self._reference[path] = f"{by_folder[str(Path(path).parent)]}/{Path(path).name}"
            self.per_folder = True

    def reference(self, path: str | None) -> str | None:
        return None if path is None else self._reference[path]


def _unique(paths: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(path) for path in paths))


def resolve_path(reference: str | None, paths: dict[str, str], overrides: dict[str, str],
                 plan_folder: Path) -> str | None:
    """A plan's path reference ("Blend1", "Inputs1/hero.blend") as a path on this machine: the parameter's
    value from the command line (`overrides`), else the plan's own (relative ones from the plan's folder)."""
    if reference is None:
        return None
    name, _, rest = reference.partition("/")
    if name in overrides:
        base = overrides[name]
    elif name in paths:
        base = paths[name]
        if not Path(base).is_absolute():
            base = str(plan_folder / base)
    else:
        raise InvalidInputError(f"the plan names a path parameter {name!r} it does not define")
    return str(Path(base) / rest) if rest else base


def portable_path(path: str, plan_folder: Path) -> str:
    """Paths at or below the plan's folder are stored relative to it (the bundle moves as one); others stay
    absolute (the farm's path mapping takes care of them)."""
    try:
        return Path(os.path.relpath(path, plan_folder)).as_posix() \
            if Path(path).resolve().is_relative_to(plan_folder.resolve()) else path
    except ValueError:  # another drive on Windows
        return path


# ---------------------------------------------------------------- making a plan
PATH_SETTINGS = ("reference_path",)  # item settings that name input files (besides direction_references)


def make_plan(name: str, items: Sequence[FarmItem], characters: Sequence[FarmCharacter], model: str,
              output_dir: str) -> tuple[FarmPlan, PathTable]:
    """A plan from items whose paths are absolute: every input file becomes a path reference."""
    blends = [item.blend for item in items if item.blend]
    references = [item.settings[key] for item in items for key in PATH_SETTINGS if item.settings.get(key)]
    references += [path for item in items for path in item.settings.get("direction_references", {}).values()]
    references += [character.reference for character in characters if character.reference]
    table = PathTable(blends, references)

    def referenced(item: FarmItem) -> FarmItem:
        settings = dict(item.settings)
        for key in PATH_SETTINGS:
            if settings.get(key):
                settings[key] = table.reference(settings[key])
        if settings.get("direction_references"):
            settings["direction_references"] = {direction: table.reference(path)
                                                for direction, path in settings["direction_references"].items()}
        return FarmItem(item.character, item.action, item.direction, table.reference(item.blend), settings,
                        item.mirrors)

    plan = FarmPlan(name, tuple(referenced(item) for item in items),
                    tuple(FarmCharacter(c.name, table.reference(c.reference), c.packing) for c in characters),
                    dict(table.parameters), model, output_dir)
    check_plan_text(plan)
    return plan, table


def check_plan_text(plan: FarmPlan) -> None:
    """OpenJD format strings read `{{`: no name or setting of the plan may hold one."""
    if "{{" in json.dumps(plan.to_json()):
        raise InvalidInputError("a name, Action or setting in the job file contains '{{', which farm templates "
                                "read as a parameter: rename it")


def portable_plan(plan: FarmPlan, plan_folder: Path) -> FarmPlan:
    """The plan as written beside the bundle: input paths at or below its folder relative to it."""
    return FarmPlan(plan.name, plan.items, plan.characters,
                    {name: portable_path(path, plan_folder) for name, path in plan.paths.items()},
                    plan.model, plan.output_dir)


# ---------------------------------------------------------------- Open Job Description
OPENJD_SPEC = "jobtemplate-2023-09"


def _path_parameter(name: str, value: str, object_type: str, data_flow: str, description: str,
                    bundle: Path) -> dict:
    """A PATH job parameter whose default is `value` relative to the bundle folder (OpenJD joins relative
    defaults to the template's folder, and refuses absolute ones), so a bundle also works where it is moved
    together with its inputs."""
    try:
        default = Path(os.path.relpath(value, bundle)).as_posix()
    except ValueError:  # another drive (Windows)
        raise InvalidInputError(f"{value} is on another drive than the bundle folder {bundle}: OpenJD needs "
                                "default paths relative to the bundle; put it on the same drive") from None
    return {"name": name, "type": "PATH", "objectType": object_type, "dataFlow": data_flow, "default": default,
            "description": description}


def _worker_command(farm_args: Sequence[str], plan: FarmPlan) -> dict:
    """The worker's command: Blender in the background running the extension's `spritediff` command, with
    every path the farm may map given as a parameter."""
    args = ["--background", "--command", "spritediff", "farm", *farm_args]
    if plan.model:
        args += ["--model", "{{Param.ModelDir}}"]
    args += ["--out", "{{Param.OutputDir}}"]
    for name in plan.paths:
        args += ["--path", f"{name}={{{{Param.{name}}}}}"]
    return {"command": "{{Param.Blender}}", "args": args}


def openjd_template(plan: FarmPlan, table: PathTable, bundle: Path) -> dict[str, Any]:
    """The job template for a bundle in folder `bundle`: `Generate`, one task per item (an INT task parameter
    numbering the plan's items, so no limit of 1024 values), and `Pack`, one task per character, after every
    Generate task."""
    parameters = [_path_parameter("Plan", str(bundle / PLAN_FILE), "FILE", "IN",
                                  "the spritediff farm plan (plan.json)", bundle)]
    if plan.model:
        parameters.append(_path_parameter("ModelDir", plan.model, "DIRECTORY", "IN",
                                          "the weights folder every task loads", bundle))
    parameters.append(_path_parameter("OutputDir", plan.output_dir, "DIRECTORY", "OUT",
                                      "sprites land in OutputDir/<character>/<animation>, each character's sheet "
                                      "in OutputDir/<character>/sheet", bundle))
    parameters.append({"name": "Blender", "type": "STRING", "default": "blender", "minLength": 1,
                       "description": "the Blender 4.2+ executable on the workers (spritediff extension installed)"})
    users: dict[str, list[str]] = {}
    for item in plan.items:
        for reference in [item.blend, *(item.settings.get(k) for k in PATH_SETTINGS),
                          *item.settings.get("direction_references", {}).values()]:
            if reference:
                users.setdefault(reference.partition("/")[0], []).append(item.character)
    for name, path in table.parameters.items():
        kind = "DIRECTORY" if table.per_folder else "FILE"
        who = ", ".join(dict.fromkeys(users.get(name, []))) or "the character sheets"
        parameters.append(_path_parameter(name, path, kind, "IN", f"input of {who}", bundle))
    return {
        "specificationVersion": OPENJD_SPEC,
        "name": f"spritediff {plan.name}",
        "description": f"{len(plan.items)} animations of {len(plan.characters)} characters, then a sheet each",
        "parameterDefinitions": parameters,
        "steps": [
            {"name": "Generate",
             "description": "one character's Action in one direction per task (the plan lists them)",
             "parameterSpace": {"taskParameterDefinitions": [
                 {"name": "Item", "type": "INT", "range": f"1-{len(plan.items)}"}]},
             "script": {"actions": {"onRun": _worker_command(
                 ["task", "{{Param.Plan}}", "--item", "{{Task.Param.Item}}"], plan)}}},
            {"name": "Pack",
             "description": "each character's sheet from every animation Generate wrote for it",
             "dependencies": [{"dependsOn": "Generate"}],
             "parameterSpace": {"taskParameterDefinitions": [
                 {"name": "Character", "type": "STRING", "range": [c.name for c in plan.characters]}]},
             "script": {"actions": {"onRun": _worker_command(
                 ["pack", "{{Param.Plan}}", "--character", "{{Task.Param.Character}}"], plan)}}},
        ],
    }


def asset_references(plan: FarmPlan, table: PathTable, plan_path: str) -> dict[str, Any]:
    """Deadline Cloud's asset_references.json: what to upload as job attachments, and what to download."""
    kind = "directories" if table.per_folder else "filenames"
    inputs: dict[str, list[str]] = {"filenames": [plan_path], "directories": []}
    inputs[kind] += list(table.parameters.values())
    if plan.model:
        inputs["directories"].append(plan.model)
    return {"assetReferences": {"inputs": inputs, "outputs": {"directories": [plan.output_dir]},
                                "referencedPaths": []}}


def _write_farm_folder(plan: FarmPlan, bundle: Path, files: dict[str, Any]) -> dict[str, Path]:
    """plan.json (input paths beside or below the folder made relative) and `files` (JSON documents, or bytes)
    into `bundle`, all at once or not at all."""
    from .staged_writes import staged_directory, write_json

    with staged_directory(bundle, kind=FARM_BUNDLE) as staging:
        write_json(staging / PLAN_FILE, portable_plan(plan, bundle).to_json())
        for name, content in files.items():
            if isinstance(content, bytes):
                (staging / name).write_bytes(content)
            else:
                write_json(staging / name, content)
    return {name: bundle / name for name in (PLAN_FILE, *files)}


def write_openjd_bundle(plan: FarmPlan, table: PathTable, bundle: Path) -> dict[str, Path]:
    """plan.json, template.json and asset_references.json into `bundle`: a job bundle for `deadline bundle
    submit` and `openjd run`."""
    bundle = Path(bundle).absolute()
    return _write_farm_folder(plan, bundle, {
        "template.json": openjd_template(plan, table, bundle),
        "asset_references.json": asset_references(plan, table, str(bundle / PLAN_FILE))})


# ---------------------------------------------------------------- Flamenco
def flamenco_submission(plan: FarmPlan, plan_path: str, priority: int = 50) -> dict[str, Any]:
    """The body of a Flamenco Manager job submission (POST /api/v3/jobs) for the spritediff job type. Each
    task opens its character's .blend (Flamenco's blender-render command needs one), so every item needs one."""
    if not 0 <= priority <= 100:
        raise InvalidInputError(f"Flamenco priority must be 0 to 100, got {priority}")
    missing = sorted({item.character for item in plan.items if not item.blend})
    if missing:
        raise InvalidInputError(f"Flamenco tasks open each character's .blend: give a blend for {', '.join(missing)}")

    def blend_of(item: FarmItem) -> str:
        return resolve_path(item.blend, plan.paths, {}, Path(plan_path).parent)

    first_blend = {}
    for item in plan.items:
        first_blend.setdefault(item.character, blend_of(item))
    import platform

    return {
        "name": f"spritediff {plan.name}", "type": "spritediff", "priority": priority,
        "submitter_platform": {"Darwin": "darwin", "Windows": "windows"}.get(platform.system(), "linux"),
        "settings": {
            "plan": plan_path, "output_dir": plan.output_dir, "model_dir": plan.model,
            "items": json.dumps([{"label": item.label, "character": item.character, "blend": blend_of(item)}
                                 for item in plan.items]),
            "characters": json.dumps([{"name": c.name, "blend": first_blend[c.name]} for c in plan.characters]),
        },
    }


def write_flamenco_job(plan: FarmPlan, bundle: Path, priority: int = 50) -> dict[str, Path]:
    """plan.json, flamenco_job.json (the submission) and the job type spritediff.js into `bundle`."""
    bundle = Path(bundle).absolute()
    return _write_farm_folder(plan, bundle, {
        "flamenco_job.json": flamenco_submission(plan, str(bundle / PLAN_FILE), priority),
        FLAMENCO_JOB_TYPE.name: FLAMENCO_JOB_TYPE.read_bytes()})


def read_plan(path: str | Path) -> FarmPlan:
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"farm plan {path} does not exist") from None
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"farm plan {path} cannot be read ({error})") from None
    return FarmPlan.from_json(content, str(path))


def parse_path_overrides(values: Sequence[str]) -> dict[str, str]:
    """`--path NAME=VALUE` (repeatable): the farm's value of each path parameter on this worker."""
    overrides = {}
    for value in values:
        name, equals, path = value.partition("=")
        if not equals or not name.strip():
            raise InvalidInputError(f"--path takes NAME=PATH, got {value!r}")
        overrides[name.strip()] = path
    return overrides
