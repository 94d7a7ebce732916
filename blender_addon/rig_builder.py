"""Building the bundled OpenPose character rig, its preset Actions and cameras in a scene (from `rigs/`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import bpy
from mathutils import Euler, Vector

from spritediff_core import rig

from .actions import assign_action

DEFAULT_RIG = "spritediff_character"
PRESETS = ("idle", "walk", "run", "jump", "attack")


def load_rig_data(name: str = DEFAULT_RIG) -> dict[str, Any]:
    return json.loads((rig.rigs_directory() / f"{name}.json").read_text(encoding="utf-8"))


def load_preset(name: str) -> dict[str, Any]:
    path = rig.rigs_directory() / "presets" / f"{name}.json"
    if not path.is_file():
        raise rig.BoneMapError(f"no preset motion {name!r} (presets: {', '.join(PRESETS)})")
    return json.loads(path.read_text(encoding="utf-8"))


def build_armature(scene: bpy.types.Scene, name: str = "Character", rig_data: dict | None = None,
                   location: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> bpy.types.Object:
    """A new armature object with the rig's bones, linked into the scene (nothing else is touched)."""
    rig_data = rig_data or load_rig_data()
    armature = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, armature)
    obj.location = location
    scene.collection.objects.link(obj)
    obj["spritediff_bone_map"] = rig_data.get("bone_map", "spritediff")

    view_layer = bpy.context.view_layer
    previous_active = view_layer.objects.active
    previous_mode = bpy.context.object.mode if bpy.context.object else "OBJECT"
    if previous_mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        for spec in rig_data["bones"]:
            bone = armature.edit_bones.new(spec["name"])
            bone.head, bone.tail, bone.roll = Vector(spec["head"]), Vector(spec["tail"]), spec.get("roll", 0.0)
        for spec in rig_data["bones"]:
            if spec.get("parent"):
                bone = armature.edit_bones[spec["name"]]
                bone.parent = armature.edit_bones[spec["parent"]]
                bone.use_connect = bool(spec.get("connect"))
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous_active
    for pose_bone in obj.pose.bones:
        pose_bone.rotation_mode = rig_data.get("rotation_mode", "XYZ")
    return obj


def add_preset_action(obj: bpy.types.Object, preset: str | dict) -> bpy.types.Action:
    """An Action of a preset motion, keyed on the armature's pose bones (kept with a fake user)."""
    data = load_preset(preset) if isinstance(preset, str) else preset
    action = bpy.data.actions.new(f"{obj.name}_{data['name']}")
    action.use_fake_user = True
    previous = obj.animation_data.action if obj.animation_data else None
    assign_action(obj, action)
    try:
        touched: set[str] = set()
        for key in data["keyframes"]:
            touched.update(key["bones"])
        for key in data["keyframes"]:
            frame = key["frame"]
            for bone_name in sorted(touched):
                pose_bone = obj.pose.bones[bone_name]
                channels = key["bones"].get(bone_name, {})
                pose_bone.rotation_euler = Euler([math.radians(v) for v in channels.get("rotation", (0, 0, 0))])
                pose_bone.location = channels.get("location", (0.0, 0.0, 0.0))
                pose_bone.keyframe_insert("rotation_euler", frame=frame)
                pose_bone.keyframe_insert("location", frame=frame)
        action.use_frame_range = True
        action.frame_start, action.frame_end = data["frame_start"], data["frame_end"]
        action.use_cyclic = bool(data["loop"])
        action["spritediff_preset"] = data["name"]
        action["spritediff_frames"] = int(data["frames"])
        action["spritediff_fps"] = float(data["fps"])
        action["spritediff_loop"] = bool(data["loop"])
    finally:
        for pose_bone in obj.pose.bones:  # leave the rest pose showing when no action drives the rig
            pose_bone.location = (0.0, 0.0, 0.0)
            pose_bone.rotation_euler = (0.0, 0.0, 0.0)
        assign_action(obj, previous)
    return action


def add_camera(scene: bpy.types.Scene, view: str = "side", name: str | None = None,
               rig_data: dict | None = None, make_active: bool = True) -> bpy.types.Object:
    """One of the rig's recommended cameras (orthographic side or front view)."""
    spec = (rig_data or load_rig_data())["cameras"][view]
    camera = bpy.data.cameras.new(name or f"Camera_{view}")
    camera.type = spec["type"]
    if camera.type == "ORTHO":
        camera.ortho_scale = spec["ortho_scale"]
    obj = bpy.data.objects.new(name or f"Camera_{view}", camera)
    obj.location = spec["location"]
    obj.rotation_euler = Euler([math.radians(v) for v in spec["rotation_deg"]])
    scene.collection.objects.link(obj)
    if make_active:
        scene.camera = obj
    return obj


def build_character_scene(scene: bpy.types.Scene, presets: tuple[str, ...] = PRESETS,
                          view: str = "side", resolution: tuple[int, int] = (512, 512),
                          ) -> tuple[bpy.types.Object, dict[str, bpy.types.Action], bpy.types.Object]:
    """The rig, all preset Actions and a camera on a square render: what the demo and the tests start from."""
    scene.render.resolution_x, scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    armature = build_armature(scene)
    actions = {name: add_preset_action(armature, name) for name in presets}
    camera = add_camera(scene, view)
    return armature, actions, camera


def rig_path(name: str = DEFAULT_RIG) -> Path:
    return rig.rigs_directory() / f"{name}.json"
