"""Opening the .blend a headless command works on, and saving the result where the user asked."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import bpy

from spritediff_core.errors import InvalidInputError, SpriteDiffError, first_line

# What every .blend starts with (gzip- or zstd-compressed files are opened by Blender itself, so only
# clearly foreign files are refused here: Blender's own message for them names no file).
BLEND_MAGIC = (b"BLENDER", b"\x1f\x8b", b"\x28\xb5\x2f\xfd")


def open_blend(path: str | None) -> None:
    if path is None:
        return
    blend = Path(path)
    if blend.is_dir():
        raise SpriteDiffError(f"blend file {blend} is a folder: give a .blend file")
    if not blend.is_file():
        raise SpriteDiffError(f"blend file {blend} does not exist")
    with open(blend, "rb") as handle:
        start = handle.read(7)
    if not start.startswith(BLEND_MAGIC):
        raise InvalidInputError(f"{blend} is not a .blend file ({'empty' if not start else 'unknown format'})")
    try:
        bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()), load_ui=False)
    except RuntimeError as error:
        raise InvalidInputError(f"blend file {blend} cannot be read, it may be truncated or damaged "
                                f"({first_line(error).removeprefix('Error: ')})") from None


def check_save_path(path: str | None, inputs: Sequence[str | Path | None] = ()) -> Path | None:
    """Where `--save` will write the .blend, checked before any work: a .blend path in an existing folder,
    never one of the command's inputs (the opened .blend, the reference picture)."""
    if path is None:
        return None
    target = Path(path).absolute()
    if target.suffix.lower() != ".blend":
        raise InvalidInputError(f"--save {path}: give a path ending in .blend")
    if target.is_dir():
        raise InvalidInputError(f"--save {path} is a folder: give a .blend file path")
    if not target.parent.is_dir():
        raise InvalidInputError(f"--save {path}: the folder {target.parent} does not exist")
    for source in inputs:
        if source and target.resolve() == Path(source).resolve():
            raise InvalidInputError(f"--save {path} is the input {source}: save to a new file, so the input "
                                    "stays as it was")
    return target
