"""From generated frames to a game-ready sheet: transparency, optional pixel-art finishing, anchoring,
trimming and packing, engine metadata and animated previews. Used by `spritediff pack` and the add-on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from PIL import Image

from . import pixelart
from .atlas import Animation, SpriteAtlas, build_atlas
from .engine_formats import write_atlas
from .errors import InvalidInputError
from .matting import OutlineHint, matte_frame
from .previews import save_preview
from .settings import PackingSettings


def finish_frames(animations: Sequence[Animation], settings: PackingSettings,
                  reference: Image.Image | None = None, palette_image: Image.Image | None = None) -> list[Animation]:
    """Transparency, then (optionally) pixel-art scale, shared palette and outline, over all frames at once.
    `reference`: the character picture (its alpha hints at outlines; its colours can make the palette);
    `palette_image`: another picture whose colours make the palette."""
    hint = OutlineHint.from_reference(reference)
    matted = [replace(a, frames=[matte_frame(f, hint, settings.alpha) for f in a.frames]) for a in animations]
    counts = [len(a.frames) for a in matted]
    frames = [f for a in matted for f in a.frames]
    if settings.pixel_height:
        if len({f.size for f in frames}) != 1:
            raise InvalidInputError("pixel-art scaling needs all animations at one frame size")
        frames = pixelart.scale_to_height(frames, settings.pixel_height)
    source = palette_image if palette_image is not None else reference if settings.palette_from_reference else None
    if settings.palette_from_reference and source is None:
        raise InvalidInputError("a palette from the reference needs the reference picture")
    if source is not None:
        palette = pixelart.build_palette([source.convert("RGBA")], settings.palette or 32)
        frames = pixelart.apply_palette(frames, palette)
    elif settings.palette:
        frames = pixelart.apply_palette(frames, pixelart.build_palette(frames, settings.palette))
    if settings.outline:
        frames = pixelart.add_outline(frames)
    out, start = [], 0
    for animation, count in zip(matted, counts):
        out.append(replace(animation, frames=frames[start:start + count]))
        start += count
    return out


def write_sheet(animations: Sequence[Animation], directory: str | Path, basename: str,
                settings: PackingSettings = PackingSettings(), reference: Image.Image | None = None,
                palette_image: Image.Image | None = None) -> tuple[SpriteAtlas, list[Path]]:
    """Finish the frames, pack them and write pages, metadata and previews into `directory`."""
    finished = finish_frames(animations, settings, reference, palette_image)
    atlas = build_atlas(finished, settings)
    directory = Path(directory)
    written = write_atlas(atlas, directory, basename, settings.format)
    for animation in finished:
        for fmt in settings.preview_formats:
            suffix = {"gif": ".gif", "apng": ".apng.png", "webp": ".webp"}[fmt]
            written.append(save_preview(animation.frames, directory / f"{animation.name}{suffix}", animation.fps,
                                        animation.loop, fmt))
    return atlas, written
