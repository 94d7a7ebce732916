"""Generate Sprites, as a job in three parts so the UI never freezes and the scene never half-changes:

1. `prepare_run` (main thread): read everything from the scene (armature, Action, camera, references) and
   draw the pose images, one job per generated direction (one without directions). Only reads; every problem
   is a clear SpriteDiffError before anything starts, every output folder included.
2. `GenerationJob` (worker thread): load the model (cached), run the core, decode frames one by one. It never
   touches bpy. `poll()` reports progress and new frames; `cancel()` stops it within one denoising step.
3. `finish` (main thread): write the files (staged, all or nothing), then create the Blender datablocks
   (image sequence, packed atlas, optional preview plane, custom properties). Nothing in the scene changes
   before this point, and if this part fails what it created is removed again. With directions, each
   direction is finished as it completes, then `finish_run` adds the mirrored directions and the character
   sheet (a direction that failed leaves the ones finished before it in place).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from spritediff_core import directions as compass
from spritediff_core import staged_writes
from spritediff_core.errors import GenerationCancelled, SpriteDiffError
from spritediff_core.settings import GenerationSettings, RuntimeSettings, check_runtime_settings

from . import armature_reader as reader


@dataclass
class GenerateOptions:
    """One Generate Sprites run as plain values (from the panel, the command line or a batch file): what to
    read from the scene, and the generation settings (spritediff_core.settings, the one settings model)."""

    model: str  # a weights folder; "" for the bundled spritediff-mini
    output_dir: str
    armature: str | None = None
    action: str | None = None
    camera: str | None = None
    bone_map: str | None = None
    frames: int | None = None
    frame_range: tuple[int, int] | None = None
    auto_frame: bool = True
    frame_with: tuple[str, ...] = ()  # other Actions of the character sharing one framing (steady scale)
    reference_path: str | None = None
    reference_image: str | None = None  # name of a Blender image
    preview_plane: bool = False
    add_to_folder: bool = False  # write beside files already in the output folder (never over them)
    directions: int = 1  # 1: the camera's view; 4 or 8 (spritediff_core.directions), plus a character sheet
    mirror: str = ""  # "e:w,...": directions made by flipping another one instead of generating them
    direction_references: tuple[tuple[str, str], ...] = ()  # (direction, picture): each direction uses the nearest
    settings: GenerationSettings = field(default_factory=GenerationSettings)


SCENE_OPTIONS = tuple(name for name in GenerateOptions.__dataclass_fields__ if name != "settings")
LOOP_FLAGS = {"auto": None, "cycle": True, "one-shot": False}


@dataclass
class PreparedJob:
    options: GenerateOptions
    name: str
    fps: float
    loop: bool
    reference: Any  # PIL image
    pose_images: list
    pose_sequence: Any
    scene_name: str
    warnings: list[str] = field(default_factory=list)
    direction: str | None = None
    reference_source: str = ""  # the picture (path or Blender image) this animation was generated from
    mirrored_from: str | None = None  # a mirrored animation: the generated one it is flipped from


@dataclass
class PreparedRun:
    """Everything one Generate Sprites run read from the scene: a job per generated direction (one without
    directions), the animations made by mirroring (name -> the generated one flipped), and the character
    sheet's name (None without directions)."""

    jobs: list[PreparedJob]
    mirrors: dict[str, PreparedJob] = field(default_factory=dict)
    sheet_name: str | None = None

    @property
    def warnings(self) -> list[str]:
        return [warning for job in self.jobs for warning in job.warnings]


def _reference_from_blender_image(name: str):
    from PIL import Image

    image = bpy.data.images.get(name)
    if image is None:
        raise SpriteDiffError(f"no Blender image named {name!r}")
    width, height = image.size
    if width == 0 or height == 0:
        raise SpriteDiffError(f"Blender image {name!r} has no pixels (is its file missing?)")
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    array = (pixels.reshape(height, width, 4)[::-1] * 255).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(array, "RGBA")


def reference_source(options: GenerateOptions, direction: str | None = None) -> str:
    """Which picture a direction is generated from: the Blender image or file given, or of the pictures given
    per direction the one nearest `direction`."""
    if options.direction_references:
        tagged = dict(options.direction_references)
        return tagged[compass.nearest_direction(direction or "s", tagged)]
    if options.reference_image:
        return options.reference_image
    if not options.reference_path:
        raise SpriteDiffError("no reference picture: choose an image file or a Blender image")
    return options.reference_path


def load_reference(options: GenerateOptions, direction: str | None = None):
    source = reference_source(options, direction)
    if options.reference_image and not options.direction_references:
        return _reference_from_blender_image(source)
    return staged_writes.open_image(Path(bpy.path.abspath(source)), "reference picture")


def read_sequences(scene: bpy.types.Scene, options: GenerateOptions) -> list:
    """The options' Action as pose sequences on the generation canvas, one per direction."""
    sampling = options.settings.sampling
    return reader.read_named_directions(
        scene, options.armature, options.action, options.camera, sampling.width, sampling.height,
        frame_with=options.frame_with, bone_map=options.bone_map,
        sampling=reader.FrameSampling(count=options.frames, frame_range=options.frame_range),
        loop=LOOP_FLAGS[sampling.loop], auto_frame=options.auto_frame, directions=options.directions)


def check_direction_options(options: GenerateOptions) -> dict[str, str]:
    """The direction options checked before any work: {mirrored direction: the direction it is flipped from}."""
    names = compass.direction_names(options.directions)
    mirrors = compass.parse_mirrors(options.mirror, names)
    if options.direction_references:
        if not names:
            raise SpriteDiffError("references per direction (DIRECTION=PICTURE) need --directions 4 or 8")
        seen = [direction for direction, _ in options.direction_references]
        for direction in seen:
            compass.check_direction(direction)
        if len(set(seen)) != len(seen):
            raise SpriteDiffError(f"a reference picture is given twice for one direction ({', '.join(seen)})")
        for _, path in options.direction_references:
            if not Path(bpy.path.abspath(path)).is_file():
                raise SpriteDiffError(f"reference picture {path} does not exist")
    return mirrors


def resolve_options(options: GenerateOptions) -> GenerateOptions:
    """The options with the weights folder found and checked and the frame size and guidance resolved (0: the
    model's native size and recommended guidance), so a missing folder or a bad size is reported before any work."""
    from spritediff_core import weights  # PyYAML: installed by the preferences

    model = weights.resolve_model(bpy.path.abspath(options.model) if str(options.model).strip() else None)
    weights.locate_weights(model)
    sampling = options.settings.sampling
    width, height = weights.generation_size(model, sampling.width, sampling.height)
    guidance_scale = weights.generation_guidance(model, sampling.guidance_scale)
    return replace(options, model=str(model), settings=options.settings.with_flat(
        {"width": width, "height": height, "guidance_scale": guidance_scale}))


def output_folder(options: GenerateOptions, name: str) -> Path:
    return Path(bpy.path.abspath(options.output_dir)) / name


def output_inputs(options: GenerateOptions) -> tuple[Path, ...]:
    """What a run reads from disk, which its output folder may neither be nor lie inside."""
    paths = [Path(options.model)]
    if options.reference_path and not options.reference_image:
        paths.append(Path(bpy.path.abspath(options.reference_path)))
    paths += [Path(bpy.path.abspath(path)) for _, path in options.direction_references]
    return tuple(paths)


def prepare_run(scene: bpy.types.Scene, options: GenerateOptions, only_direction: str | None = None,
                character_sheet: bool = True) -> PreparedRun:
    """Read the scene into a job per generated direction (main thread). Every output folder is checked
    first. Raises SpriteDiffError; never changes the scene.

    A farm task passes `only_direction` (that generated direction and the ones mirrored from it, with the
    framing still shared by every direction) and `character_sheet=False` (its Pack step makes the sheet)."""
    from spritediff_core import drawing  # OpenCV, Pillow: installed by the preferences
    from spritediff_core.output_layout import ANIMATION, CHARACTER_SHEET, CHARACTER_SHEET_FOLDER, mirrored_frames
    options = resolve_options(options)
    check_runtime_settings(options.settings.runtime)
    mirror_directions = check_direction_options(options)
    sequences = read_sequences(scene, options)
    if only_direction is not None:
        if only_direction not in [sequence.metadata.get("direction") for sequence in sequences]:
            raise SpriteDiffError(f"direction {only_direction!r} is not one of the {options.directions} directions")
        if only_direction in mirror_directions:
            raise SpriteDiffError(f"direction {only_direction!r} is mirrored from "
                                  f"{mirror_directions[only_direction]!r}: generate that one")
        sequences = [sequence for sequence in sequences if only_direction in (
            sequence.metadata.get("direction"), mirror_directions.get(sequence.metadata.get("direction")))]
    inputs = output_inputs(options)
    for sequence in sequences:
        staged_writes.check_output_folder(output_folder(options, sequence.name), inputs,
                                          keep_other_files=options.add_to_folder, kind=ANIMATION)
    sheet_name = None
    if options.directions > 1 and character_sheet:
        sheet_name = Path(bpy.path.abspath(options.output_dir)).absolute().name or "character"
        staged_writes.check_output_folder(Path(bpy.path.abspath(options.output_dir)) / CHARACTER_SHEET_FOLDER,
                                          inputs, kind=CHARACTER_SHEET)
    references: dict[str, Any] = {}
    jobs: dict[str | None, PreparedJob] = {}
    for sequence in sequences:
        direction = sequence.metadata.get("direction")
        if direction in mirror_directions:
            continue
        source = reference_source(options, direction)
        if source not in references:
            references[source] = load_reference(options, direction)
        pose_images = [drawing.draw_pose(frame, stroke_scale="auto") for frame in sequence.frames]
        jobs[direction] = PreparedJob(options, sequence.name, sequence.fps, sequence.loop, references[source],
                                      pose_images, sequence, scene.name, empty_pose_warnings(sequence), direction,
                                      source)
    mirrors = {}
    for sequence in sequences:
        direction = sequence.metadata.get("direction")
        if direction in mirror_directions:
            source = jobs[mirror_directions[direction]]
            mirrors[sequence.name] = replace(
                source, name=sequence.name, pose_images=mirrored_frames(source.pose_images),
                pose_sequence=sequence, warnings=[], direction=direction, mirrored_from=source.name)
    return PreparedRun(list(jobs.values()), mirrors, sheet_name)


def empty_pose_warnings(sequence) -> list[str]:
    """A frame in which no keypoint is visible gives the model nothing to follow: say which; with none
    visible at all, refuse (the camera or the bone map is wrong)."""
    empty = [index for index, frame in enumerate(sequence.frames) if not frame.visible.any()]
    if empty and len(empty) == len(sequence.frames):
        raise SpriteDiffError(f"{sequence.name}: no keypoint of the armature is visible in any frame: check that "
                              "the camera sees the character and that the bone map fits the rig")
    if not empty:
        return []
    shown = ", ".join(str(i) for i in empty[:8]) + (" ..." if len(empty) > 8 else "")
    return [f"{sequence.name}: no keypoint visible in {len(empty)} of {len(sequence.frames)} frames ({shown}); "
            "those frames will not follow a pose"]


# ---------------------------------------------------------------- the worker
_PIPELINES: dict[tuple, Any] = {}
_PIPELINES_LOCK = threading.Lock()


def cached_pipeline(model: str, runtime: RuntimeSettings):
    """Loading weights takes long: keep the last pipeline per (folder, device, dtype, model switches) while
    Blender runs."""
    key = (str(Path(model).resolve()), runtime.device, runtime.dtype, runtime.enable_model_cpu_offload,
           runtime.enable_vae_tiling)
    with _PIPELINES_LOCK:
        if key not in _PIPELINES:
            _PIPELINES.clear()  # one model in memory at a time
            from spritediff_core.pipeline import load_pipeline  # torch: installed by the preferences

            _PIPELINES[key] = load_pipeline(model, runtime)
        return _PIPELINES[key]


def release_pipelines() -> None:
    with _PIPELINES_LOCK:
        _PIPELINES.clear()


@dataclass
class JobStatus:
    state: str  # "running", "finished", "failed", "cancelled"
    step: int
    total_steps: int
    frames_done: int
    total_frames: int
    message: str = ""
    new_frames: list = field(default_factory=list)  # (index, PIL image) decoded since the last poll

    @property
    def progress(self) -> float:
        steps = self.step / max(self.total_steps, 1)
        frames = self.frames_done / max(self.total_frames, 1)
        return 0.9 * steps + 0.1 * frames


class GenerationJob:
    """Runs the core for one prepared job on a worker thread; poll() from the main thread."""

    def __init__(self, prepared: PreparedJob) -> None:
        self.prepared = prepared
        self.frames: list = []
        self.seconds = 0.0
        self._state = "running"
        self._message = ""
        self._step = 0
        self._reported = 0
        self._cancel = threading.Event()
        self._pipe = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def in_thread(self) -> bool:
        """Whether this job was started on a worker thread (`start`), not run blocking."""
        return self._thread is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_blocking, name="spritediff-generate", daemon=True)
        self._thread.start()

    def run_blocking(self) -> None:
        options = self.prepared.options
        sampling, runtime = options.settings.sampling, options.settings.runtime
        started = time.perf_counter()
        try:
            self._pipe = cached_pipeline(options.model, runtime)
            from spritediff_core.pipeline import tensor_to_pil

            if self._cancel.is_set():
                raise GenerationCancelled("cancelled")
            latents = self._pipe(
                self.prepared.reference, self.prepared.pose_images, sampling.width, sampling.height,
                num_inference_steps=sampling.num_inference_steps, guidance_scale=sampling.guidance_scale,
                seed=sampling.seed, context_frames=sampling.context_frames,
                context_overlap=sampling.context_overlap, loop=self.prepared.loop, loop_mode=sampling.loop_mode,
                output_type="latent",
                callback_on_step_end=self._on_step, show_progress=False, options=runtime,
            )
            try:  # decode_chunk_size frames at a time, so the UI can show frames as they finish
                chunk = runtime.decode_chunk_for(self._pipe.device.type)
                for start in range(0, latents.shape[2], chunk):
                    if self._cancel.is_set():
                        raise GenerationCancelled("cancelled")
                    decoded = self._pipe.decode(latents[:, :, start:start + chunk], chunk)
                    with self._lock:
                        self.frames.extend(tensor_to_pil(frame) for frame in decoded)
            finally:
                self._pipe.offload_models()  # with model CPU offload, the VAE goes back too
            self._set_state("finished")
        except GenerationCancelled:
            self._set_state("cancelled", "cancelled")
        except SpriteDiffError as error:
            self._set_state("failed", str(error))
        except Exception as error:  # noqa: BLE001  (report, never a traceback dialog)
            self._set_state("failed", f"{type(error).__name__}: {error}")
        finally:
            self.seconds = time.perf_counter() - started

    def _on_step(self, _pipe, index, _timestep, values):
        with self._lock:
            self._step = index + 1
        return values

    def _set_state(self, state: str, message: str = "") -> None:
        with self._lock:
            self._state, self._message = state, message

    def cancel(self) -> None:
        self._cancel.set()
        if self._pipe is not None:
            self._pipe.cancel()

    def poll(self) -> JobStatus:
        with self._lock:
            new = [(i, self.frames[i]) for i in range(self._reported, len(self.frames))]
            self._reported = len(self.frames)
            return JobStatus(self._state, self._step, self.prepared.options.settings.sampling.num_inference_steps,
                             len(self.frames),
                             len(self.prepared.pose_images), self._message, new)

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True


# ---------------------------------------------------------------- back into Blender
def settings_record(prepared: PreparedJob, seconds: float) -> dict[str, Any]:
    """What a generation recorded in the .blend: the scene options, the settings (replayable with
    `spritediff generate --settings`), the time taken and the weights' fingerprint."""
    options = prepared.options
    scene = {name: getattr(options, name) for name in SCENE_OPTIONS}
    scene["frame_range"] = list(options.frame_range) if options.frame_range else None
    scene["frame_with"] = list(options.frame_with)
    from spritediff_core.weights import weights_fingerprint

    scene["direction_references"] = [list(pair) for pair in options.direction_references]
    record = {"animation": prepared.name, "scene": scene, "settings": options.settings.to_dict(),
              "loop": prepared.loop, "seconds": round(seconds, 3), "weights": weights_fingerprint(options.model)}
    if prepared.direction:
        record.update(direction=prepared.direction, reference=prepared.reference_source)
    if prepared.mirrored_from:
        record["mirrored_from"] = prepared.mirrored_from
    return record


def finish(scene: bpy.types.Scene, job: GenerationJob) -> dict[str, Any]:
    """Write the files, then add the results to the .blend; on failure nothing stays behind in the scene."""
    prepared = job.prepared
    options = prepared.options
    record = settings_record(prepared, job.seconds)
    out = output_folder(options, prepared.name)
    from spritediff_core.output_layout import save_animation

    recorded = {"model": options.model, "settings": options.settings.to_dict(),
                **{key: record[key] for key in ("direction", "reference", "mirrored_from") if key in record}}
    paths = save_animation(out, prepared.name, job.frames, recorded, prepared.fps, prepared.loop,
                           prepared.pose_images, prepared.reference, options.settings.packing,
                           output_inputs(options), keep_other_files=options.add_to_folder)
    created: list = []  # (collection, datablock), removed again if a later step fails
    try:
        sequence = bpy.data.images.load(str(paths["first_frame"]), check_existing=False)
        created.append((bpy.data.images, sequence))
        sequence.name = f"{prepared.name}_frames"
        sequence.source = "SEQUENCE"
        pages = []
        for index, page_path in enumerate(paths["atlas_pages"]):
            page = bpy.data.images.load(str(page_path), check_existing=False)
            created.append((bpy.data.images, page))
            page.name = f"{prepared.name}_atlas" + (f"-{index}" if index else "")
            page.pack()
            page.use_fake_user = True  # keep it when saving even if nothing uses it yet
            pages.append(page)
        atlas = pages[0]
        text = json.dumps(record, indent=1)
        for image in (sequence, *pages):
            image["spritediff"] = text
            image["spritediff_seed"] = options.settings.sampling.seed
            image["spritediff_frames"] = len(job.frames)
            image["spritediff_fps"] = prepared.fps
            image["spritediff_loop"] = prepared.loop
        if options.preview_plane:
            created.extend(add_preview_plane(scene, sequence, prepared, options))
    except Exception:
        for collection, block in reversed(created):
            collection.remove(block)
        raise
    return {"sequence": sequence, "atlas": atlas, "paths": paths, "record": record}


def add_preview_plane(scene, sequence, prepared: PreparedJob, options: GenerateOptions) -> list:
    """A plane in front of the camera that plays the frames (emission shader on the image sequence)."""
    camera = reader.find_camera(scene, options.camera)
    mesh = bpy.data.meshes.new(f"{prepared.name}_preview")
    aspect = options.settings.sampling.width / options.settings.sampling.height
    mesh.from_pydata([(-aspect / 2, -0.5, 0), (aspect / 2, -0.5, 0), (aspect / 2, 0.5, 0), (-aspect / 2, 0.5, 0)],
                     [], [(0, 1, 2, 3)])
    mesh.uv_layers.new().data.foreach_set("uv", [0, 0, 1, 0, 1, 1, 0, 1])
    material = bpy.data.materials.new(f"{prepared.name}_preview")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = sequence
    texture.image_user.frame_duration = len(prepared.pose_images)
    texture.image_user.frame_start = scene.frame_start
    texture.image_user.use_auto_refresh = True
    texture.image_user.use_cyclic = prepared.loop
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    mesh.materials.append(material)
    plane = bpy.data.objects.new(f"{prepared.name}_preview", mesh)
    scene.collection.objects.link(plane)
    plane.matrix_world = camera.matrix_world @ _in_front_of_camera(camera)
    return [(bpy.data.objects, plane), (bpy.data.meshes, mesh), (bpy.data.materials, material)]


def _in_front_of_camera(camera):
    from mathutils import Matrix

    size = camera.data.ortho_scale if camera.data.type == "ORTHO" else 2.0
    return Matrix.Translation((size * 0.75, 0.0, -2.0)) @ Matrix.Scale(size / 2, 4)


def mirrored_job(prepared: PreparedJob, source: GenerationJob) -> GenerationJob:
    """A finished job holding the source job's frames flipped: a mirrored direction, never generated."""
    from spritediff_core.output_layout import mirrored_frames

    job = GenerationJob(prepared)
    job.frames = mirrored_frames(source.frames)
    return job


def finish_run(scene: bpy.types.Scene, run: PreparedRun, finished: dict[str, GenerationJob]) -> dict[str, Any]:
    """After every generated direction is finished: the mirrored directions, then the character sheet of
    every animation in the output folder (every Action and direction generated into it so far)."""
    results = {}
    for name, prepared in run.mirrors.items():
        results[name] = finish(scene, mirrored_job(prepared, finished[prepared.mirrored_from]))
    if run.sheet_name is None:
        return {"animations": results}
    from spritediff_core.output_layout import save_character_sheet

    options = run.jobs[0].options
    paths = save_character_sheet(Path(bpy.path.abspath(options.output_dir)), run.sheet_name,
                                 options.settings.packing, run.jobs[0].reference, output_inputs(options))
    name = f"{run.sheet_name}_atlas"
    old = bpy.data.images.get(name)
    if old is not None and old.get("spritediff_character_sheet"):
        bpy.data.images.remove(old)  # our own earlier sheet of this character: replaced, as its files were
    atlas = bpy.data.images.load(str(paths["atlas"]), check_existing=False)
    atlas.name = name
    atlas.pack()
    atlas.use_fake_user = True
    atlas["spritediff_character_sheet"] = True
    atlas["spritediff_animations"] = list(paths["animations"])
    return {"animations": results, "sheet": paths, "sheet_image": atlas}


def generate_one(scene: bpy.types.Scene, options: GenerateOptions, label: str = "",
                 only_direction: str | None = None, character_sheet: bool = True) -> dict[str, Any]:
    """Prepare, run and finish one generation in `scene` (every direction of it, or `only_direction` and its
    mirrors), blocking (background mode: the CLI, batch files, farm tasks, the demo). Returns the first
    animation's result (with "run": everything)."""
    run = prepare_run(scene, options, only_direction, character_sheet)
    for warning in run.warnings:
        print(f"{label}spritediff: warning: {warning}", file=sys.stderr)
    results, finished = {}, {}
    for prepared in run.jobs:
        job = GenerationJob(prepared)
        job.run_blocking()
        status = job.poll()
        if status.state != "finished":
            raise SpriteDiffError(f"{label}{prepared.name}: generation {status.state}: {status.message}")
        results[prepared.name] = finish(scene, job)
        finished[prepared.name] = job
        print(f"{label}{prepared.name}: {len(job.frames)} frames in {job.seconds:.1f} s -> "
              f"{results[prepared.name]['paths']['atlas'].parent}")
    rest = finish_run(scene, run, finished)
    results.update(rest["animations"])
    for name in rest["animations"]:
        print(f"{label}{name}: mirrored from {run.mirrors[name].mirrored_from}")
    if "sheet" in rest:
        print(f"{label}character sheet of {len(rest['sheet']['animations'])} animations -> "
              f"{rest['sheet']['atlas'].parent}")
    first = results[run.jobs[0].name]
    return {**first, "run": {"animations": results, **{k: v for k, v in rest.items() if k != "animations"}}}
