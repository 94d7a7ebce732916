"""The one place the add-on imports the core from.

In the repository `spritediff_core` is a sibling package; inside the built extension it is vendored as a
subpackage of the add-on (Blender extensions may only use relative imports).
"""

import importlib.util

if __package__ and importlib.util.find_spec(f"{__package__}.spritediff_core") is not None:
    from .spritediff_core import drawing, errors, framing, poses, rig  # inside the built extension
else:
    from spritediff_core import drawing, errors, framing, poses, rig  # in the repository

SpriteDiffError = errors.SpriteDiffError

__all__ = ["drawing", "errors", "framing", "poses", "rig", "SpriteDiffError"]
