"""The one place the add-on imports the core from.

In the repository `spritediff_core` is a sibling package; inside the built extension it is vendored as a
subpackage of the add-on (Blender extensions may only use relative imports). Modules that need only numpy
(which Blender ships) are imported here; the others (drawing needs OpenCV and Pillow, the pipeline torch)
through `load()` when first used, so the add-on registers, and its preferences can install the packages,
before they are present.
"""

import importlib
import importlib.util

if __package__ and importlib.util.find_spec(f"{__package__}.spritediff_core") is not None:
    PACKAGE = f"{__package__}.spritediff_core"  # inside the built extension
else:
    PACKAGE = "spritediff_core"  # in the repository


def load(name: str):
    """A core module by name, e.g. load("pipeline")."""
    return importlib.import_module(f"{PACKAGE}.{name}")


errors = load("errors")
files = load("files")
framing = load("framing")
poses = load("poses")
rig = load("rig")
SpriteDiffError = errors.SpriteDiffError
