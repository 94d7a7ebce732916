"""Operators: Preview Poses, Generate Sprites (a modal job that keeps the UI responsive), Cancel.

Generation runs on a worker thread; a window-manager timer calls `JobRunner.poll`, which is also what the
tests drive, since modal timers never tick without Blender's event loop. In background mode the same job
runs blocking. Errors are reported as Blender reports, never as tracebacks.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from spritediff_core.directions import COMPASS, direction_names
from spritediff_core.errors import SpriteDiffError

from . import dependencies
from .generation import (
    GenerationJob,
    PreparedRun,
    finish,
    finish_run,
    prepare_run,
    read_sequences,
    release_pipelines,
    resolve_options,
)
from .preferences import preferences
from .properties import options_from_settings

PREVIEW_IMAGE = "spritediff_preview"
_runners: dict[str, "JobRunner"] = {}  # scene name -> the job running for it (UI state only)


class JobRunner:
    """Drives a run's GenerationJobs (one per generated direction), one after the other, from the main
    thread: progress, frame previews, finishing each, then the mirrored directions and the character sheet;
    cancel."""

    def __init__(self, scene: bpy.types.Scene, run: PreparedRun, keep_model_loaded: bool = True) -> None:
        self.scene_name, self.run, self.keep_model_loaded = scene.name, run, keep_model_loaded
        self.pending = list(run.jobs[1:])
        self.job = GenerationJob(run.jobs[0])
        self.finished: dict[str, GenerationJob] = {}
        self.result = None
        self.error = ""
        self.preview_existed = PREVIEW_IMAGE in bpy.data.images

    @property
    def label(self) -> str:
        done = len(self.finished) + 1
        total = len(self.run.jobs)
        return f"{self.job.prepared.name} ({done}/{total}): " if total > 1 else ""

    @property
    def scene(self) -> bpy.types.Scene:
        return bpy.data.scenes[self.scene_name]

    def poll(self) -> str:
        """One tick: returns 'running', 'finished', 'failed' or 'cancelled'."""
        status = self.job.poll()
        settings = self.scene.spritediff
        settings.progress = (len(self.finished) + status.progress) / len(self.run.jobs)
        settings.status = (f"{self.label}step {status.step}/{status.total_steps}, "
                           f"frames {status.frames_done}/{status.total_frames}")
        for _index, frame in status.new_frames:
            show_preview(frame)
        if status.state == "running":
            return "running"
        if status.state == "finished" and self.pending:  # the next direction, run as this one was
            try:
                self.result = finish(self.scene, self.job)
            except Exception as error:  # noqa: BLE001  (reported; what finished before stays)
                return self._failed(describe(error))
            self.finished[self.job.prepared.name] = self.job
            threaded = self.job.in_thread
            self.job = GenerationJob(self.pending.pop(0))
            if threaded:
                self.job.start()
            else:
                self.job.run_blocking()
            return self.poll()
        settings.running = False
        _runners.pop(self.scene_name, None)
        if not self.keep_model_loaded:
            release_pipelines()
        if status.state == "finished":
            try:
                self.result = finish(self.scene, self.job)
                self.finished[self.job.prepared.name] = self.job
                self.result["run"] = finish_run(self.scene, self.run, self.finished)
            except Exception as error:  # noqa: BLE001  (reported, and the scene is left as it was)
                return self._failed(describe(error))
            frames = sum(len(job.frames) for job in self.finished.values())
            seconds = sum(job.seconds for job in self.finished.values())
            settings.status = f"done: {frames} frames in {seconds:.1f} s"
            return "finished"
        self._drop_preview()
        self.error = status.message
        settings.status = status.state if status.state == "cancelled" else f"failed: {status.message}"
        return status.state

    def _failed(self, message: str) -> str:
        settings = self.scene.spritediff
        settings.running = False
        _runners.pop(self.scene_name, None)
        self._drop_preview()
        self.error = message
        settings.status = f"failed: {message}"
        return "failed"

    def cancel(self) -> None:
        self.pending.clear()
        self.job.cancel()

    def _drop_preview(self) -> None:
        """A failed or cancelled job leaves no trace: not even the live preview image it made."""
        image = bpy.data.images.get(PREVIEW_IMAGE)
        if image is not None and not self.preview_existed:
            bpy.data.images.remove(image)


def describe(error: Exception) -> str:
    """Our own errors speak for themselves; anything else gets its type for the report."""
    return str(error) if isinstance(error, SpriteDiffError) else f"{type(error).__name__}: {error}"


def show_preview(frame) -> None:
    """The latest finished frame in the `spritediff_preview` image (created on first use)."""
    import numpy as np

    rgba = np.asarray(frame.convert("RGBA"), dtype=np.float32)[::-1] / 255.0
    height, width = rgba.shape[:2]
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is None or tuple(image.size) != (width, height):
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.new(PREVIEW_IMAGE, width, height, alpha=True)
    image.pixels.foreach_set(rgba.ravel())
    image.update()


def start_generation(context) -> JobRunner:
    """Prepare and start a job for the context's scene (raises SpriteDiffError before anything changes)."""
    scene = context.scene
    if scene.name in _runners:
        raise SpriteDiffError("a generation is already running for this scene")
    dependencies.require()
    prefs = preferences(context)
    options = options_from_settings(scene.spritediff, prefs)
    runner = JobRunner(scene, prepare_run(scene, options),
                       keep_model_loaded=prefs.keep_model_loaded if prefs else True)
    _runners[scene.name] = runner
    scene.spritediff.running = True
    scene.spritediff.progress = 0.0
    scene.spritediff.status = "loading model"
    return runner


class SPRITEDIFF_OT_generate(bpy.types.Operator):
    bl_idname = "spritediff.generate"
    bl_label = "Generate Sprites"
    bl_description = "Generate one sprite frame per pose of the Action, from the reference picture"

    _timer = None
    _runner: JobRunner | None = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.scene.name not in _runners

    def execute(self, context):
        try:
            runner = start_generation(context)
        except Exception as error:  # noqa: BLE001  (a report, never a traceback dialog)
            self.report({"ERROR"}, describe(error))
            return {"CANCELLED"}
        for warning in runner.run.warnings:
            self.report({"WARNING"}, warning)
        if bpy.app.background or context.window_manager is None or not context.window_manager.windows:
            runner.job.run_blocking()  # no event loop: modal timers would never tick
            return self._report(runner, runner.poll())
        runner.job.start()
        self._runner = runner
        self._timer = context.window_manager.event_timer_add(0.25, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state = self._runner.poll()
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        if state == "running":
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._report(self._runner, state)

    def _report(self, runner: JobRunner, state: str):
        if state == "finished":
            sheet = runner.result["run"].get("sheet_image")
            atlas = sheet.name if sheet is not None else runner.result["atlas"].name
            frames = sum(len(job.frames) for job in runner.finished.values())
            self.report({"INFO"}, f"spritediff: {frames} frames, atlas {atlas}")
            return {"FINISHED"}
        self.report({"WARNING"} if state == "cancelled" else {"ERROR"},
                    "spritediff: cancelled" if state == "cancelled" else f"spritediff: {runner.error}")
        return {"CANCELLED"}


class SPRITEDIFF_OT_cancel(bpy.types.Operator):
    bl_idname = "spritediff.cancel"
    bl_label = "Cancel"
    bl_description = "Stop the running generation (within one denoising step); the scene stays as it was"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.scene.name in _runners

    def execute(self, context):
        _runners[context.scene.name].cancel()
        return {"FINISHED"}


class SPRITEDIFF_OT_preview_poses(bpy.types.Operator):
    bl_idname = "spritediff.preview_poses"
    bl_label = "Preview Poses"
    bl_description = "Draw the Action's pose images (what the model will follow) and show them as an image sequence"

    def execute(self, context):
        scene = context.scene
        options = options_from_settings(scene.spritediff, preferences(context))
        try:
            dependencies.require(("PIL", "cv2"))
            sequences = read_sequences(scene, resolve_options(options))  # one per direction
            from spritediff_core import drawing

            # Beside the animation folders, not inside one: a later Generate Sprites owns <output>/<action>/.
            previews = Path(bpy.path.abspath(options.output_dir)) / "pose_previews"
            for sequence in sequences:
                names = drawing.write_pose_sequence(sequence, previews / sequence.name)
            sequence, folder = sequences[0], previews / sequences[0].name
        except Exception as error:  # noqa: BLE001  (a report, never a traceback dialog)
            self.report({"ERROR"}, describe(error))
            return {"CANCELLED"}
        name = f"{sequence.name}_poses"
        old = bpy.data.images.get(name)
        if old is not None:
            bpy.data.images.remove(old)
        image = bpy.data.images.load(str(folder / names[0]))
        image.name, image.source = name, "SEQUENCE"
        shown = ", ".join(s.name for s in sequences)
        self.report({"INFO"}, f"spritediff: {len(names)} poses of {shown} in {previews}")
        return {"FINISHED"}


class SPRITEDIFF_OT_direction_reference_add(bpy.types.Operator):
    bl_idname = "spritediff.direction_reference_add"
    bl_label = "Add Picture"
    bl_description = "Add a reference picture of the character seen from one direction"

    def execute(self, context):
        items = context.scene.spritediff.direction_references
        taken = {item.direction for item in items}
        item = items.add()
        # The next free direction, the four main ones first.
        item.direction = next((name for name in (*direction_names(4), *COMPASS) if name not in taken), "s")
        return {"FINISHED"}


class SPRITEDIFF_OT_direction_reference_remove(bpy.types.Operator):
    bl_idname = "spritediff.direction_reference_remove"
    bl_label = "Remove Picture"
    bl_description = "Remove this direction's reference picture"

    index: bpy.props.IntProperty(default=-1)

    def execute(self, context):
        items = context.scene.spritediff.direction_references
        if not 0 <= self.index < len(items):
            return {"CANCELLED"}
        items.remove(self.index)
        return {"FINISHED"}


def cancel_all() -> None:
    for runner in list(_runners.values()):
        runner.cancel()
        runner.job.wait(10)
    _runners.clear()


CLASSES = (SPRITEDIFF_OT_generate, SPRITEDIFF_OT_cancel, SPRITEDIFF_OT_preview_poses,
           SPRITEDIFF_OT_direction_reference_add, SPRITEDIFF_OT_direction_reference_remove)
