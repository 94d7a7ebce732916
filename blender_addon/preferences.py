"""Add-on preferences: where the weights are, which device and precision, low-memory options, and the
installer for the Python packages Blender does not ship."""

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from spritediff_core.settings import RuntimeSettings

from . import dependencies
from .setting_properties import draw_settings, setting_properties

PACKAGE = __package__
_install_state: dict = {}  # the running install (thread, progress), shown by the preferences


class SpriteDiffPreferences(bpy.types.AddonPreferences):
    """The weights folder, the runtime settings (one property per field of the core's RuntimeSettings) and
    the package installer."""

    bl_idname = PACKAGE

    weights_dir: StringProperty(
        name="Weights folder", subtype="DIR_PATH",
        description="Moore-AnimateAnyone pretrained_weights folder (or one with Sprite Sheet Diffusion's "
                    "fine-tunes, or one spritediff train wrote); empty: the bundled spritediff-mini",
    )
    keep_model_loaded: BoolProperty(
        name="Keep model loaded", default=True,
        description="Keep the weights in memory between runs (faster; frees GPU memory only when turned off)",
    )
    torch_build: EnumProperty(
        name="PyTorch build", default="CUDA",
        items=[("CUDA", "CUDA (NVIDIA GPU)", "The default PyTorch build, with CUDA"),
               ("CPU", "CPU only", "Smaller download, no GPU")],
    )
    wheels_dir: StringProperty(
        name="Local wheels", subtype="DIR_PATH",
        description="Optional: install offline from a folder of .whl files instead of the package index",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "weights_dir")
        layout.prop(self, "keep_model_loaded")
        box = layout.box()
        box.label(text="How to run (same frames unless marked APPROXIMATE)")
        draw_settings(box, self, RuntimeSettings)

        box = layout.box()
        box.label(text="Python packages")
        missing = dependencies.missing_packages()
        if missing:
            box.label(text="Missing: " + ", ".join(r.split("==")[0] for r in missing), icon="ERROR")
        else:
            box.label(text="All present", icon="CHECKMARK")
        box.prop(self, "torch_build")
        box.prop(self, "wheels_dir")
        state = _install_state.get("progress")
        if state is not None and not state.done:
            box.label(text="Installing: " + state.last_line[-90:], icon="TIME")
        else:
            box.operator("spritediff.install_dependencies", icon="IMPORT")
            if state is not None:
                box.label(text=("Installed" if state.ok else "Install failed") + f"; log: {state.log_path}",
                          icon="CHECKMARK" if state.ok else "ERROR")


class SPRITEDIFF_OT_install_dependencies(bpy.types.Operator):
    bl_idname = "spritediff.install_dependencies"
    bl_label = "Install Packages"
    bl_description = "Install PyTorch, diffusers and the rest with pip into this extension's user folder"

    def execute(self, context):
        prefs = preferences(context)
        requirements = dependencies.missing_packages() or [r for _, r in dependencies.PACKAGES]
        target = dependencies.site_packages_folder(PACKAGE)
        wheels = Path(bpy.path.abspath(prefs.wheels_dir)) if prefs.wheels_dir else None
        build = prefs.torch_build.lower()
        if wheels is None and not bpy.app.online_access:  # Blender's "Allow Online Access" is the user's word
            self.report({"ERROR"}, "Online access is off (Preferences > System > Network): allow it to install "
                                   "from PyPI, or set a folder of wheels to install offline")
            return {"CANCELLED"}
        if bpy.app.background:
            progress = dependencies.install(requirements, target, build, wheels)
            _install_state["progress"] = progress
            if not progress.ok:
                self.report({"ERROR"}, f"pip failed; see {progress.log_path}")
                return {"CANCELLED"}
            return {"FINISHED"}
        _install_state["thread"], _install_state["progress"] = dependencies.install_in_background(
            requirements, target, build, wheels)
        bpy.app.timers.register(_redraw_until_installed, first_interval=0.5)
        return {"FINISHED"}


SpriteDiffPreferences.__annotations__.update(setting_properties(RuntimeSettings))


def _redraw_until_installed():
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()
    progress = _install_state.get("progress")
    return None if progress is None or progress.done else 0.5


def preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(PACKAGE)
    return addon.preferences if addon is not None else None


CLASSES = (SpriteDiffPreferences, SPRITEDIFF_OT_install_dependencies)


def unregister_timers() -> None:
    if bpy.app.timers.is_registered(_redraw_until_installed):
        bpy.app.timers.unregister(_redraw_until_installed)
