"""The "Sprites" tab of the 3D View sidebar (N-panel)."""

from __future__ import annotations

import bpy

from spritediff_core.settings import PackingSettings, SamplingSettings

from .operators import PREVIEW_IMAGE
from .setting_properties import draw_settings


class VIEW3D_PT_spritediff(bpy.types.Panel):
    bl_label = "spritediff"
    bl_idname = "VIEW3D_PT_spritediff"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Sprites"

    def draw(self, context):
        settings = context.scene.spritediff
        layout = self.layout

        box = layout.box()
        box.label(text="Motion", icon="ARMATURE_DATA")
        box.prop(settings, "armature")
        box.prop(settings, "bone_map")
        box.prop(settings, "action")
        row = box.row()
        row.prop(settings, "frame_mode", expand=True)
        if settings.frame_mode == "COUNT":
            box.prop(settings, "frame_count")
        elif settings.frame_mode == "RANGE":
            row = box.row(align=True)
            row.prop(settings, "frame_start")
            row.prop(settings, "frame_end")

        box = layout.box()
        box.label(text="Camera", icon="CAMERA_DATA")
        box.prop(settings, "camera")
        box.prop(settings, "auto_frame")
        box.row().prop(settings, "directions", expand=True)
        if settings.directions != "1":
            box.prop(settings, "mirror")

        box = layout.box()
        box.label(text="Character", icon="IMAGE_DATA")
        box.row().prop(settings, "reference_source", expand=True)
        box.prop(settings, "reference_path" if settings.reference_source == "FILE" else "reference_image")
        box.prop(settings, "camera_background")
        if settings.directions != "1":
            box.label(text="Pictures per direction (nearest used)")
            for index, item in enumerate(settings.direction_references):
                row = box.row(align=True)
                row.prop(item, "direction", text="")
                row.prop(item, "path", text="")
                row.operator("spritediff.direction_reference_remove", text="", icon="X").index = index
            box.operator("spritediff.direction_reference_add", icon="ADD")

        box = layout.box()
        box.label(text="Generation", icon="SETTINGS")
        draw_settings(box, settings, SamplingSettings)
        box = layout.box()
        box.label(text="Sprite sheet", icon="TEXTURE")
        draw_settings(box, settings, PackingSettings)
        box = layout.box()
        box.label(text="Output", icon="FILE_FOLDER")
        box.prop(settings, "output_dir")
        box.prop(settings, "preview_plane")
        box.prop(settings, "add_to_folder")

        layout.operator("spritediff.preview_poses", icon="POSE_HLT")
        if settings.running:
            layout.prop(settings, "progress", text=settings.status or "working")
            layout.operator("spritediff.cancel", icon="CANCEL")
        else:
            layout.operator("spritediff.generate", icon="RENDER_ANIMATION")
            if settings.status:
                layout.label(text=settings.status)
        preview = bpy.data.images.get(PREVIEW_IMAGE)
        if preview is not None and preview.preview is not None:
            layout.template_icon(icon_value=preview.preview.icon_id, scale=6.0)


CLASSES = (VIEW3D_PT_spritediff,)
