"""Per-scene settings of the Sprites panel, and their translation into GenerateOptions.

No `from __future__ import annotations` here: Blender reads the property annotations as objects.
"""

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from spritediff_core import rig
from spritediff_core.directions import COMPASS
from spritediff_core.settings import GenerationSettings, PackingSettings, RuntimeSettings, SamplingSettings

from .generation import GenerateOptions
from .setting_properties import read_settings, setting_properties


def _bone_map_items(_self, _context):
    items = [("AUTO", "Auto", "Detect the map that fits the armature")]
    items += [(name, name, f"rigs/bone_maps/{name}.json") for name in rig.available_bone_maps()]
    return items


def _is_armature(_self, obj):
    return obj.type == "ARMATURE"


def _is_camera(_self, obj):
    return obj.type == "CAMERA"


def _update_camera_background(settings, context):
    camera = settings.camera or context.scene.camera
    if camera is None or camera.type != "CAMERA":
        return
    image = settings.reference_image
    if image is None and settings.reference_path:
        image = bpy.data.images.load(bpy.path.abspath(settings.reference_path), check_existing=True)
    data = camera.data
    data.show_background_images = settings.camera_background
    if settings.camera_background and image is not None:
        background = next((b for b in data.background_images if b.image == image), None) or data.background_images.new()
        background.image = image
        background.alpha = 0.5


class SpriteDiffDirectionReference(bpy.types.PropertyGroup):
    """A reference picture of the character seen from one direction (used for the directions nearest it)."""

    direction: EnumProperty(name="Direction", default="s", items=[(name, name, "") for name in COMPASS])
    path: StringProperty(name="Picture", subtype="FILE_PATH")


class SpriteDiffSettings(bpy.types.PropertyGroup):
    armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature)
    bone_map: EnumProperty(name="Bone map", items=_bone_map_items)
    action: PointerProperty(name="Action", type=bpy.types.Action,
                            description="The motion to turn into sprites (default: the armature's current one)")
    frame_mode: EnumProperty(name="Frames", default="ACTION",  # as the command line without --frames/--range
                             items=[("ACTION", "Action", "The Action's own frames (its spritediff_frames count, "
                                                         "else every frame)"),
                                    ("COUNT", "Count", "N frames evenly sampled"),
                                    ("RANGE", "Range", "Every frame of a range")])
    frame_count: IntProperty(name="Count", default=8, min=1, max=256)
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=8)
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=_is_camera,
                            description="Default: the scene camera")
    auto_frame: BoolProperty(name="Auto-framing", default=True,
                             description="One steady framing that holds the whole animation")
    directions: EnumProperty(name="Directions", default="1",
                             items=[("1", "1", "The camera's own view"),
                                    ("4", "4", "s, e, n, w: the character turned about its root for each, named "
                                               "by the way it faces on screen (s: towards the viewer)"),
                                    ("8", "8", "s, se, e, ne, n, nw, w, sw")])
    direction_references: CollectionProperty(
        type=SpriteDiffDirectionReference, name="Pictures per direction",
        description="With directions: the character seen from some directions (front, side, back...), each used "
                    "for the directions nearest it; empty: the one reference picture for every direction")
    mirror: StringProperty(name="Mirror", default="",
                           description="Directions made by flipping others instead of generating them, e.g. "
                                       "e:w,ne:nw,se:sw (left and right swap with the picture)")
    reference_source: EnumProperty(name="Reference", default="FILE",
                                   items=[("FILE", "File", "An image file"), ("IMAGE", "Image", "A Blender image")])
    reference_path: StringProperty(name="Picture", subtype="FILE_PATH")
    reference_image: PointerProperty(name="Image", type=bpy.types.Image)
    camera_background: BoolProperty(name="Show behind camera", default=False,
                                    description="Show the reference as the camera background to line up the rig",
                                    update=_update_camera_background)
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="//sprites/")
    preview_plane: BoolProperty(name="Preview plane", default=False,
                                description="Add a plane in front of the camera that plays the frames")
    add_to_folder: BoolProperty(name="Add to folder", default=False,
                                description="Write beside files already in the animation's output folder (never "
                                            "over them); otherwise a folder holding files spritediff did not "
                                            "write is refused")
    # Live status, written by the running job's timer.
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty(name="Status", default="")
    running: BoolProperty(default=False)


# The settings of what to generate and how to pack it, one property per field of the core's settings.
SpriteDiffSettings.__annotations__.update(setting_properties(SamplingSettings, PackingSettings))


def options_from_settings(settings: SpriteDiffSettings, prefs) -> GenerateOptions:
    """The panel (and the preferences: the weights folder and how to run) as one GenerateOptions."""
    values = {**read_settings(settings, SamplingSettings), **read_settings(settings, PackingSettings),
              **(read_settings(prefs, RuntimeSettings) if prefs is not None else {})}
    return GenerateOptions(
        model=prefs.weights_dir if prefs is not None else "",
        output_dir=settings.output_dir,
        armature=settings.armature.name if settings.armature else None,
        action=settings.action.name if settings.action else None,
        camera=settings.camera.name if settings.camera else None,
        bone_map=None if settings.bone_map == "AUTO" else settings.bone_map,
        frames=settings.frame_count if settings.frame_mode == "COUNT" else None,
        frame_range=(settings.frame_start, settings.frame_end) if settings.frame_mode == "RANGE" else None,
        auto_frame=settings.auto_frame,
        directions=int(settings.directions),
        mirror=settings.mirror if settings.directions != "1" else "",
        direction_references=tuple((item.direction, item.path) for item in settings.direction_references
                                   if item.path) if settings.directions != "1" else (),
        reference_path=settings.reference_path if settings.reference_source == "FILE" else None,
        reference_image=settings.reference_image.name
        if settings.reference_source == "IMAGE" and settings.reference_image else None,
        preview_plane=settings.preview_plane,
        add_to_folder=settings.add_to_folder,
        settings=GenerationSettings().with_flat(values, "the Sprites panel"),
    )


CLASSES = (SpriteDiffDirectionReference, SpriteDiffSettings)
