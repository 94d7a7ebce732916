"""Per-scene settings of the Sprites panel, and their translation into GenerateOptions.

No `from __future__ import annotations` here: Blender reads the property annotations as objects.
"""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from spritediff_core import rig

from .generation import GenerateOptions


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


class SpriteDiffSettings(bpy.types.PropertyGroup):
    armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature)
    bone_map: EnumProperty(name="Bone map", items=_bone_map_items)
    action: PointerProperty(name="Action", type=bpy.types.Action,
                            description="The motion to turn into sprites (default: the armature's current one)")
    frame_mode: EnumProperty(name="Frames", default="COUNT",
                             items=[("COUNT", "Count", "N frames evenly sampled"),
                                    ("RANGE", "Range", "Every frame of a range")])
    frame_count: IntProperty(name="Count", default=8, min=1, max=256)
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=8)
    loop: EnumProperty(name="Loop", default="AUTO",
                       items=[("AUTO", "Auto", "From the Action's Cyclic setting"),
                              ("CYCLE", "Cycle", "Walk, run, idle: the last frame leads into the first"),
                              ("ONE_SHOT", "One-shot", "Jump, attack: never blend the end into the start")])
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=_is_camera,
                            description="Default: the scene camera")
    auto_frame: BoolProperty(name="Auto-framing", default=True,
                             description="One steady framing that holds the whole animation")
    reference_source: EnumProperty(name="Reference", default="FILE",
                                   items=[("FILE", "File", "An image file"), ("IMAGE", "Image", "A Blender image")])
    reference_path: StringProperty(name="Picture", subtype="FILE_PATH")
    reference_image: PointerProperty(name="Image", type=bpy.types.Image)
    camera_background: BoolProperty(name="Show behind camera", default=False,
                                    description="Show the reference as the camera background to line up the rig",
                                    update=_update_camera_background)
    width: IntProperty(name="Width", default=0, min=0, max=2048, step=8,
                       description="0: the model's native size (spritediff-mini: 64), else 512")
    height: IntProperty(name="Height", default=0, min=0, max=2048, step=8,
                        description="0: the model's native size (spritediff-mini: 64), else 512")
    steps: IntProperty(name="Steps", default=25, min=1, max=200)
    guidance: FloatProperty(name="Guidance", default=3.5, min=1.0, max=20.0)
    seed: IntProperty(name="Seed", default=1234, min=0)
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="//sprites/")
    atlas_columns: IntProperty(name="Atlas columns", default=0, min=0,
                               description="A grid with this many columns; 0: tight packing of trimmed frames")
    atlas_padding: IntProperty(name="Padding", default=2, min=0, max=64)
    alpha: EnumProperty(name="Transparency", default="AUTO",
                        items=[("AUTO", "Auto", "Remove the black background, keeping outlines (uses the reference)"),
                               ("NONE", "None", "Keep the black background"),
                               ("REMBG", "rembg", "Use rembg if installed with its model downloaded")])
    preview_plane: BoolProperty(name="Preview plane", default=False,
                                description="Add a plane in front of the camera that plays the frames")
    # Live status, written by the running job's timer.
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty(name="Status", default="")
    running: BoolProperty(default=False)


def options_from_settings(settings: SpriteDiffSettings, prefs) -> GenerateOptions:
    device = None if prefs is None or prefs.device == "AUTO" else prefs.device.lower()
    dtype = None if prefs is None or prefs.precision == "AUTO" else prefs.precision.lower()
    return GenerateOptions(
        model=prefs.weights_dir if prefs is not None else "",
        output_dir=settings.output_dir,
        armature=settings.armature.name if settings.armature else None,
        action=settings.action.name if settings.action else None,
        camera=settings.camera.name if settings.camera else None,
        bone_map=None if settings.bone_map == "AUTO" else settings.bone_map,
        frames=settings.frame_count if settings.frame_mode == "COUNT" else None,
        frame_range=(settings.frame_start, settings.frame_end) if settings.frame_mode == "RANGE" else None,
        loop={"AUTO": None, "CYCLE": True, "ONE_SHOT": False}[settings.loop],
        auto_frame=settings.auto_frame,
        reference_path=settings.reference_path if settings.reference_source == "FILE" else None,
        reference_image=settings.reference_image.name
        if settings.reference_source == "IMAGE" and settings.reference_image else None,
        width=settings.width, height=settings.height, steps=settings.steps, guidance=settings.guidance,
        seed=settings.seed, context_frames=prefs.context_frames if prefs is not None else 24,
        sequential_guidance=bool(prefs and prefs.sequential_guidance),
        attention_chunk_size=(prefs.attention_chunk or None) if prefs is not None else None,
        decode_chunk_size=prefs.decode_chunk if prefs is not None else 4,
        cpu_offload=bool(prefs and prefs.cpu_offload), vae_tiling=bool(prefs and prefs.vae_tiling),
        device=device, dtype=dtype, atlas_columns=settings.atlas_columns or None,
        atlas_padding=settings.atlas_padding, alpha=settings.alpha.lower(), preview_plane=settings.preview_plane,
    )


CLASSES = (SpriteDiffSettings,)
