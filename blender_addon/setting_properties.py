"""Blender properties made from the core's settings fields (spritediff_core.settings): the panel and the
preferences show each setting under its one name, with its default, range, choices and help."""

from dataclasses import fields

from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from spritediff_core.settings import label_of


def setting_property(spec):
    """The bpy property for one settings field."""
    meta, default = spec.metadata, spec.default
    common = {"name": label_of(spec), "description": meta["help"]}
    bounds = {key: value for key, value in (("min", meta["minimum"]), ("max", meta["maximum"])) if value is not None}
    if meta["choices"]:
        items = [(choice, choice.replace("-", " ").capitalize(), "") for choice in meta["choices"]]
        return EnumProperty(items=items, default=default, **common)
    if isinstance(default, bool):
        return BoolProperty(default=default, **common)
    if isinstance(default, int):
        return IntProperty(default=default, step=meta["multiple_of"] or 1, **bounds, **common)
    if isinstance(default, float):
        return FloatProperty(default=default, **bounds, **common)
    return StringProperty(default=default, **common)


def setting_properties(*kinds) -> dict:
    """{field name: bpy property} for every field of the given settings classes."""
    return {spec.name: setting_property(spec) for kind in kinds for spec in fields(kind)}


def read_settings(owner, kind) -> dict:
    """The values of a settings class's fields as stored on a property group (panel or preferences)."""
    return {spec.name: getattr(owner, spec.name) for spec in fields(kind)}


def draw_settings(layout, owner, kind) -> None:
    for spec in fields(kind):
        layout.prop(owner, spec.name)
