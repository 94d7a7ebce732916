"""Armature animation -> pose sequences: evaluate bones per frame, map them to keypoints, project them.

Blender in, plain arrays out: bone matrices go to the core's bone map, world points through the scene camera
(`world_to_camera_view`: orthographic and perspective, render resolution, pixel aspect and lens shift
honoured), and the core's framing puts them on the canvas. The scene is left exactly as it was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import bpy
import numpy as np
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from spritediff_core import directions as compass
from spritediff_core import framing, poses, rig
from spritediff_core.errors import SpriteDiffError

from .actions import ActionState, action_fcurves, assign_action


class PoseReadError(SpriteDiffError):
    """The scene cannot give poses: missing object, camera or animation, or a bone map that does not fit."""


@dataclass(frozen=True)
class FrameSampling:
    """Which scene frames to evaluate: N evenly spaced frames, or every frame of a range (inclusive)."""

    count: int | None = None
    frame_range: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        count = self.count if self.frame_range is None else self.frame_range[1] - self.frame_range[0] + 1
        if count is not None and not 1 <= count <= MAX_FRAMES:
            what = "--frames" if self.frame_range is None else f"the range {self.frame_range[0]}-{self.frame_range[1]}"
            raise PoseReadError(f"{what} gives {count} frames: an animation has 1 to {MAX_FRAMES} frames")


MAX_FRAMES = 4096  # frames per animation: minutes of animation at game rates, far below memory trouble


def find_armature(name: str | None) -> bpy.types.Object:
    if name is None:
        obj = bpy.context.view_layer.objects.active if bpy.context.view_layer else None
        if obj is None or obj.type != "ARMATURE":
            armatures = [o for o in bpy.context.scene.objects if o.type == "ARMATURE"]
            if len(armatures) != 1:
                raise PoseReadError("no armature selected: select one, pick it in the Sprites panel, "
                                    "or pass --armature")
            obj = armatures[0]
        return obj
    return _named_object(name, "ARMATURE", "an armature")


def _named_object(name: str, kind: str, what: str) -> bpy.types.Object:
    obj = bpy.data.objects.get(name)
    if obj is None:
        raise PoseReadError(f"no object named {name!r} in this file")
    if obj.type != kind:
        raise PoseReadError(f"{name!r} is not {what} (it is a {obj.type.lower()})")
    return obj


def find_camera(scene: bpy.types.Scene, name: str | None) -> bpy.types.Object:
    if name is None:
        if scene.camera is None:
            raise PoseReadError(f"scene {scene.name!r} has no camera: add one, pick it in the Sprites panel, "
                                "or pass --camera")
        return scene.camera
    return _named_object(name, "CAMERA", "a camera")


def find_action(armature: bpy.types.Object, name: str | None) -> bpy.types.Action:
    if name is None:
        action = armature.animation_data.action if armature.animation_data else None
        if action is None:
            raise PoseReadError(f"armature {armature.name!r} has no animation: give an Action")
        return action
    action = bpy.data.actions.get(name)
    if action is None:
        known = ", ".join(sorted(a.name for a in bpy.data.actions)) or "none"
        raise PoseReadError(f"no Action named {name!r} (Actions in this file: {known})")
    return action


def resolve_bone_map(armature: bpy.types.Object, bone_map: str | None) -> rig.ResolvedBoneMap:
    """The named map, the armature's own (custom property), or the first known map that fits."""
    names = [bone.name for bone in armature.data.bones]
    requested = bone_map or armature.get("spritediff_bone_map")
    if requested:
        return rig.BoneMap.load(requested).resolve(names)
    errors = []
    for candidate in rig.available_bone_maps():
        try:
            return rig.BoneMap.load(candidate).resolve(names)
        except rig.BoneMapError as error:
            errors.append(str(error))
    raise PoseReadError("no known bone map fits this armature:\n  " + "\n  ".join(errors))


def action_frame_range(action: bpy.types.Action) -> tuple[float, float]:
    start, end = action.frame_range
    return float(start), float(end)


def sample_frames(start: float, end: float, sampling: FrameSampling, loop: bool) -> list[float]:
    """Scene frames to evaluate. N frames of a cycle never repeat the first at the end (end == start
    again); N frames of a one-shot include both ends."""
    if sampling.frame_range is not None:
        first, last = sampling.frame_range
        if last < first:
            raise PoseReadError(f"frame range {first}-{last} is empty")
        return [float(f) for f in range(first, last + 1)]
    count = sampling.count
    if count is None:
        count = int(round(end - start)) + (0 if loop else 1)
    if count < 1:
        raise PoseReadError(f"frame count must be at least 1, got {count}")
    if loop:
        return [start + i * (end - start) / count for i in range(count)]
    if count == 1:
        return [start]
    return [start + i * (end - start) / (count - 1) for i in range(count)]


def bone_states(armature_eval: bpy.types.Object, names: set[str]) -> dict[str, rig.BoneState]:
    return {
        name: rig.BoneState(
            np.array(armature_eval.pose.bones[name].matrix),
            np.array(armature_eval.data.bones[name].matrix_local),
            float(armature_eval.data.bones[name].length),
        )
        for name in names
    }


def world_keypoints(armature_eval, bone_map: rig.ResolvedBoneMap) -> tuple[np.ndarray, np.ndarray]:
    """All keypoints of the current frame in world space (K, 3), and which the bone map found (K,)."""
    local, found = bone_map.keypoints_from_bones(bone_states(armature_eval, bone_map.bones))
    world_matrix = np.array(armature_eval.matrix_world)
    return (world_matrix[:3, :3] @ local.T).T + world_matrix[:3, 3], found


def project_points(scene, camera_eval, world: np.ndarray, found: np.ndarray,
                   turn: np.ndarray | None = None) -> framing.CameraPoints:
    """World keypoints in the camera's normalised view, after an optional world transform `turn` (a
    direction: the character turned about its root, as if the camera orbited it)."""
    if turn is not None:
        world = (turn[:3, :3] @ world.T).T + turn[:3, 3]
    view = np.array([tuple(world_to_camera_view(scene, camera_eval, Vector(p))) for p in world])
    return framing.CameraPoints(view, found)


def project_frame(scene, camera_eval, armature_eval, bone_map: rig.ResolvedBoneMap) -> framing.CameraPoints:
    """All keypoints of the current frame in the camera's normalised view."""
    return project_points(scene, camera_eval, *world_keypoints(armature_eval, bone_map))


# Characters face their armature's -Y axis: Blender's convention, which Rigify, Mixamo imports and the bundled
# rig follow. The root the camera orbits is the armature object's origin.
FORWARD_AXIS = (0.0, -1.0, 0.0)


def direction_turns(armature: bpy.types.Object, camera: bpy.types.Object, count: int) -> dict[str | None, Any]:
    """{direction: world transform} for a 4- or 8-direction set seen through `camera` ({None: None} for 1:
    the camera's own view, unnamed)."""
    names = compass.direction_names(count)
    if not names:
        return {None: None}
    depsgraph = bpy.context.evaluated_depsgraph_get()  # world matrices as they are now, constraints included
    matrix = np.array(armature.evaluated_get(depsgraph).matrix_world)
    forward = matrix[:3, :3] @ np.array(FORWARD_AXIS)
    camera_axes = compass.CameraAxes.from_matrix(camera.evaluated_get(depsgraph).matrix_world)
    return compass.direction_turns(names, forward, camera_axes, matrix[:3, 3])


def camera_aspect(scene: bpy.types.Scene) -> float:
    render = scene.render
    return (render.resolution_x * render.pixel_aspect_x) / (render.resolution_y * render.pixel_aspect_y)


@dataclass(frozen=True)
class ActionPoses:
    """One Action seen through the camera (from one direction), before framing."""

    name: str
    frames: list[float]
    points: list[framing.CameraPoints]
    fps: float
    loop: bool
    action: str = ""
    direction: str | None = None


def read_action(scene, armature, action, camera, bone_map: rig.ResolvedBoneMap, sampling: FrameSampling,
                loop: bool | None = None) -> ActionPoses:
    """Evaluate `action` on `armature` at the sampled frames; the scene is restored afterwards."""
    return read_action_directions(scene, armature, action, camera, bone_map, sampling, loop)[0]


def read_action_directions(scene, armature, action, camera, bone_map: rig.ResolvedBoneMap,
                           sampling: FrameSampling, loop: bool | None = None,
                           turns: dict[str | None, Any] | None = None) -> list[ActionPoses]:
    """`action` evaluated once per sampled frame and seen from every direction of `turns` (default: the
    camera's own view); the scene is restored afterwards."""
    turns = turns or {None: None}
    if not action_fcurves(action, armature) and not action_fcurves(action):
        raise PoseReadError(f"Action {action.name!r} has no animation curves")
    if loop is None:
        loop = bool(action.get("spritediff_loop", action.use_cyclic if action.use_frame_range else True))
    start, end = action_frame_range(action)
    if sampling.count is None and sampling.frame_range is None and "spritediff_frames" in action:
        sampling = FrameSampling(count=int(action["spritediff_frames"]))
    frames = sample_frames(start, end, sampling, loop)
    state = ActionState(scene, armature)
    try:
        assign_action(armature, action)
        points: dict[str | None, list] = {direction: [] for direction in turns}
        for frame in frames:
            whole = int(np.floor(frame))
            scene.frame_set(whole, subframe=frame - whole)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            camera_eval = camera.evaluated_get(depsgraph)
            world, found = world_keypoints(armature.evaluated_get(depsgraph), bone_map)
            for direction, turn in turns.items():
                points[direction].append(project_points(scene, camera_eval, world, found, turn))
    finally:
        state.restore()
    scene_fps = scene.render.fps / scene.render.fps_base
    if "spritediff_fps" in action:
        fps = float(action["spritediff_fps"])
    else:  # keep the motion's duration: N samples over the range play in the time the range plays
        span = (end - start) if loop or len(frames) < 2 else (end - start) * len(frames) / (len(frames) - 1)
        fps = scene_fps * len(frames) / span if span > 0 else scene_fps
    name = str(action.get("spritediff_preset", action.name))
    return [ActionPoses(compass.animation_name(name, direction), frames, points[direction], fps, loop, name,
                        direction) for direction in turns]


def frame_action_poses(animations: Sequence[ActionPoses], aspect: float, width: int, height: int,
                       with_hands: bool, auto_frame: bool = True, margin: float = 0.08,
                       ground: float = 0.92) -> list[poses.PoseSequence]:
    """Pose sequences on a width x height canvas; with auto-framing, one framing shared by all of them."""
    if auto_frame:
        shared = framing.auto_framing([a.points for a in animations], aspect, width, height, margin, ground)
    else:
        shared = framing.camera_framing(aspect, width, height)
    return [
        poses.PoseSequence(
            [framing.to_pose_frame(p, shared, with_hands) for p in animation.points], name=animation.name,
            fps=round(animation.fps, 4), loop=animation.loop,
            metadata={"scene_frames": animation.frames, "framing": {"scale": shared.scale,
                                                                     "offset": [shared.offset_x, shared.offset_y]},
                      **({"action": animation.action, "direction": animation.direction}
                         if animation.direction else {})},
        )
        for animation in animations
    ]


def read_pose_sequences(scene: bpy.types.Scene, armature: bpy.types.Object, actions: Sequence[bpy.types.Action],
                        camera: bpy.types.Object, width: int, height: int, bone_map: str | None = None,
                        sampling: FrameSampling = FrameSampling(), loop: bool | None = None,
                        auto_frame: bool = True, hands: bool = True,
                        directions: int = 1) -> list[poses.PoseSequence]:
    """Pose sequences of several Actions of one character, each from every direction (1: the camera's view;
    4 or 8: see `spritediff_core.directions`), all sharing one framing (steady across actions and directions).
    Action-major order, directions in compass order."""
    resolved = resolve_bone_map(armature, bone_map)
    turns = direction_turns(armature, camera, directions)
    animations = [seen for action in actions
                  for seen in read_action_directions(scene, armature, action, camera, resolved, sampling, loop,
                                                     turns)]
    return frame_action_poses(animations, camera_aspect(scene), width, height,
                              with_hands=hands and resolved.has_hands(), auto_frame=auto_frame)


def read_named_action(scene: bpy.types.Scene, armature: str | None, action: str | None, camera: str | None,
                      width: int, height: int, frame_with: Sequence[str] = (), bone_map: str | None = None,
                      sampling: FrameSampling = FrameSampling(), loop: bool | None = None,
                      auto_frame: bool = True) -> poses.PoseSequence:
    """One Action's pose sequence, objects given by name (None: the active/only armature, its current
    animation, the scene camera); `frame_with` names Actions that share its framing."""
    return read_named_directions(scene, armature, action, camera, width, height, frame_with, bone_map, sampling,
                                 loop, auto_frame)[0]


def read_named_directions(scene: bpy.types.Scene, armature: str | None, action: str | None, camera: str | None,
                          width: int, height: int, frame_with: Sequence[str] = (), bone_map: str | None = None,
                          sampling: FrameSampling = FrameSampling(), loop: bool | None = None,
                          auto_frame: bool = True, directions: int = 1) -> list[poses.PoseSequence]:
    """One Action's pose sequences from each direction (one sequence for 1), objects given by name as in
    `read_named_action`; one framing for every direction of it and of the `frame_with` Actions."""
    armature_object = find_armature(armature)
    camera_object = find_camera(scene, camera)
    actions = [find_action(armature_object, name) for name in (action, *frame_with)]
    sequences = read_pose_sequences(scene, armature_object, actions, camera_object, width, height,
                                    bone_map=bone_map, sampling=sampling, loop=loop, auto_frame=auto_frame,
                                    directions=directions)
    return sequences[:max(len(compass.direction_names(directions)), 1)]
