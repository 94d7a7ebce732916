"""Actions across Blender 4.2 to 5.0: slots and channelbags (4.4+) where they exist, `action.fcurves` before.

`action.fcurves` is gone in 5.0; Actions there hold channelbags per slot.
"""

from __future__ import annotations

import bpy


def assign_action(obj: bpy.types.Object, action: bpy.types.Action | None) -> None:
    """Make `action` drive `obj`, picking a slot for it where the Blender version has slots."""
    animation = obj.animation_data or obj.animation_data_create()
    animation.action = action
    if action is None or not hasattr(animation, "action_slot"):
        return
    if animation.action_slot is None and len(action.slots):
        candidates = [slot for slot in action.slots if getattr(slot, "target_id_type", "OBJECT") == "OBJECT"]
        animation.action_slot = (candidates or list(action.slots))[0]


def action_fcurves(action: bpy.types.Action, obj: bpy.types.Object | None = None) -> list:
    """The F-curves of `action` (for the slot `obj` uses, or every slot), on any supported version."""
    if hasattr(action, "slots"):
        from bpy_extras.anim_utils import action_get_channelbag_for_slot

        slot = None
        if obj is not None and obj.animation_data is not None and obj.animation_data.action == action:
            slot = obj.animation_data.action_slot
        slots = [slot] if slot is not None else list(action.slots)
        curves = []
        for each in slots:
            channelbag = action_get_channelbag_for_slot(action, each)
            if channelbag is not None:
                curves.extend(channelbag.fcurves)
        if curves or len(action.slots):
            return curves
    return list(getattr(action, "fcurves", []))


POSE_CHANNELS = ("location", "rotation_quaternion", "rotation_euler", "rotation_axis_angle", "scale")


class ActionState:
    """Remembers an object's action, slot, pose-bone transforms and the scene frame, and puts them back.

    Evaluating an Action writes its channels into the pose bones, and they stay there after the Action is
    unassigned; without restoring them one Action's pose would leak into the next and into the user's scene.
    """

    def __init__(self, scene: bpy.types.Scene, obj: bpy.types.Object) -> None:
        self.scene, self.obj = scene, obj
        self.pose = {
            bone.name: {channel: tuple(getattr(bone, channel)) for channel in POSE_CHANNELS}
            for bone in (obj.pose.bones if obj.pose else ())
        }
        self.frame, self.subframe = scene.frame_current, scene.frame_subframe
        animation = obj.animation_data
        self.had_animation = animation is not None
        self.action = animation.action if animation else None
        self.slot = getattr(animation, "action_slot", None) if animation else None

    def restore(self) -> None:
        if self.had_animation or self.obj.animation_data is not None:
            animation = self.obj.animation_data or self.obj.animation_data_create()
            animation.action = self.action
            if self.slot is not None and hasattr(animation, "action_slot"):
                animation.action_slot = self.slot
            if not self.had_animation and self.action is None:
                self.obj.animation_data_clear()
        self.scene.frame_set(self.frame, subframe=self.subframe)
        # After frame_set, which re-evaluates the Action: unkeyed tweaks on animated channels survive too.
        for name, channels in self.pose.items():
            bone = self.obj.pose.bones.get(name)
            if bone is not None:
                for channel, value in channels.items():
                    setattr(bone, channel, value)
