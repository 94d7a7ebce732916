"""From generated frames to a game-ready sheet: transparency, optional pixel-art finishing, anchoring,
trimming and packing, engine metadata and animated previews. Used by `spritediff pack` and the add-on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from PIL import Image

from . import pixelart
from .atlas import Animation, PackOptions, SpriteAtlas, build_atlas
from .engine_formats import write_atlas
from .errors import InvalidInputError
from .matting import OutlineHint, matte_frame
from .previews import save_preview


@dataclass(frozen=True)
class SheetOptions:
    alpha: str = "auto"  # auto | none | rembg
    reference: Image.Image | None = None  # the character picture: its alpha hints at outlines, its colours
    pixel_height: int | None = None
    palette: int | str | None = None  # N colours, "reference", or None
    outline: bool = False
    pack: PackOptions = field(default_factory=PackOptions)
    format: str = "texturepacker-hash"
    previews: tuple[str, ...] = ("gif",)


def finish_frames(animations: Sequence[Animation], options: SheetOptions) -> list[Animation]:
    """Transparency, then (optionally) pixel-art scale, shared palette and outline, over all frames at once."""
    hint = OutlineHint.from_reference(options.reference)
    matted = [replace(a, frames=[matte_frame(f, hint, options.alpha) for f in a.frames]) for a in animations]
    counts = [len(a.frames) for a in matted]
    frames = [f for a in matted for f in a.frames]
    if options.pixel_height:
        if len({f.size for f in frames}) != 1:
            raise InvalidInputError("pixel-art scaling needs all animations at one frame size")
        frames = pixelart.scale_to_height(frames, options.pixel_height)
    if options.palette is not None:
        if options.palette == "reference":
            if options.reference is None:
                raise InvalidInputError("a reference palette needs the reference picture")
            palette = pixelart.build_palette([options.reference.convert("RGBA")], 32)
        else:
            palette = pixelart.build_palette(frames, int(options.palette))
        frames = pixelart.apply_palette(frames, palette)
    if options.outline:
        frames = pixelart.add_outline(frames)
    out, start = [], 0
    for animation, count in zip(matted, counts):
        out.append(replace(animation, frames=frames[start:start + count]))
        start += count
    return out


def write_sheet(animations: Sequence[Animation], directory: str | Path, basename: str,
                options: SheetOptions = SheetOptions()) -> tuple[SpriteAtlas, list[Path]]:
    """Finish the frames, pack them and write pages, metadata and previews into `directory`."""
    finished = finish_frames(animations, options)
    atlas = build_atlas(finished, options.pack)
    directory = Path(directory)
    written = write_atlas(atlas, directory, basename, options.format)
    for animation in finished:
        for fmt in options.previews:
            suffix = {"gif": ".gif", "apng": ".apng.png", "webp": ".webp"}[fmt]
            written.append(save_preview(animation.frames, directory / f"{animation.name}{suffix}", animation.fps,
                                        animation.loop, fmt))
    return atlas, written
