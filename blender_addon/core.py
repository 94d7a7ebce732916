"""The one place the add-on imports the core from.

In the repository `spritediff_core` is a sibling package; inside the built extension it is vendored as a
subpackage of the add-on (Blender extensions may only use relative imports). Light modules are imported
here; heavy ones (the pipeline pulls in torch) through `load()` when first needed.
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


drawing = load("drawing")
errors = load("errors")
files = load("files")
framing = load("framing")
poses = load("poses")
rig = load("rig")
sheets = load("sheets")
SpriteDiffError = errors.SpriteDiffError
