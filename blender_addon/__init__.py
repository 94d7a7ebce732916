"""spritediff: sprite sheets from one picture and an armature animation (Blender extension).

Registers the Sprites panel, its operators and preferences, the `blender --command spritediff` command,
and puts the extension's private site-packages (where the installer puts torch and friends) on sys.path.
"""

from __future__ import annotations

try:
    import bpy
except ImportError:  # imported outside Blender (e.g. by tools that only read the package)
    bpy = None

_cli_handle = None


def _cli(argv):
    from .cli import main

    return main(argv, prog="blender --command spritediff")


def register():
    global _cli_handle
    from . import dependencies, operators, panel, preferences, properties

    try:
        dependencies.add_to_path(dependencies.site_packages_folder(__package__, create=False))
    except (ValueError, RuntimeError):  # not installed as an extension (running from the repository)
        pass
    for module in (preferences, properties, operators, panel):
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
    bpy.types.Scene.spritediff = bpy.props.PointerProperty(type=properties.SpriteDiffSettings)
    if hasattr(bpy.utils, "register_cli_command"):
        _cli_handle = bpy.utils.register_cli_command("spritediff", _cli)


def unregister():
    global _cli_handle
    from . import operators, panel, preferences, properties

    operators.cancel_all()
    preferences.unregister_timers()
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    del bpy.types.Scene.spritediff
    for module in (panel, operators, properties, preferences):
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
