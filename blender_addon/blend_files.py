"""Opening the .blend a headless command works on."""

from __future__ import annotations

from pathlib import Path

import bpy

from spritediff_core.errors import SpriteDiffError


def open_blend(path: str | None) -> None:
    if path is None:
        return
    blend = Path(path)
    if not blend.is_file():
        raise SpriteDiffError(f"blend file {blend} does not exist")
    bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()), load_ui=False)
