"""Sprite atlases: anchored, trimmed frames of one or more animations packed into pages.

- Anchor: one anchor for all frames of an animation, or of every animation of a character
  (`shared_anchor`): the bottom-centre of the union of the frames' content. Every frame is cut from that
  same union box (its *source* canvas), so nothing jitters when played.
- Trim: each frame keeps only its content's bounding box; its offset in the source canvas
  (`spriteSourceSize`) lets engines restore the position.
- Packing: a grid of fixed cells, or tight MaxRects packing (rectpack), with padding between frames, edge
  extrusion (against texture bleeding), power-of-two pages, a maximum page size and as many pages as needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .settings import PackingSettings


@dataclass(frozen=True)
class Animation:
    """One animation's frames (RGBA, all of one size), playback rate and whether it cycles."""

    name: str
    frames: Sequence[Image.Image]
    fps: float = 8.0
    loop: bool = True

    def __post_init__(self) -> None:
        if not self.frames:
            raise InvalidInputError(f"animation {self.name!r} has no frames")
        sizes = {frame.size for frame in self.frames}
        if len(sizes) != 1:
            raise InvalidInputError(f"animation {self.name!r} mixes frame sizes {sorted(sizes)}")
        if self.fps <= 0:
            raise InvalidInputError(f"animation {self.name!r}: fps must be positive")


@dataclass(frozen=True)
class PlacedFrame:
    """Where one frame went: its page and rectangle, and how to put it back in its source canvas."""

    name: str
    animation: str
    index: int
    page: int
    x: int
    y: int
    width: int
    height: int
    offset_x: int  # of the trimmed rectangle inside the source canvas
    offset_y: int
    source_width: int
    source_height: int
    pivot_x: float  # the anchor, as a fraction of the source canvas
    pivot_y: float
    duration_ms: int

    @property
    def trimmed(self) -> bool:
        return (self.width, self.height) != (self.source_width, self.source_height)


@dataclass
class SpriteAtlas:
    pages: list[Image.Image]
    frames: list[PlacedFrame]
    animations: list[Animation] = field(default_factory=list)

    def frames_of(self, animation: str) -> list[PlacedFrame]:
        return [frame for frame in self.frames if frame.animation == animation]


def content_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels with any alpha, or None for an empty frame."""
    return image.getchannel("A").getbbox()


def union_box(images: Sequence[Image.Image]) -> tuple[int, int, int, int]:
    boxes = [box for box in (content_box(image) for image in images) if box is not None]
    if not boxes:
        width, height = images[0].size
        return 0, 0, width, height
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def frame_name(animation: str, index: int) -> str:
    return f"{animation}_{index:04d}"


@dataclass(frozen=True)
class _Cut:
    animation: Animation
    index: int
    image: Image.Image  # trimmed content
    offset: tuple[int, int]
    source: tuple[int, int]
    pivot: tuple[float, float]


def _cut_frames(animations: Sequence[Animation], options: PackingSettings) -> list[_Cut]:
    groups = [list(animations)] if options.shared_anchor else [[a] for a in animations]
    cuts = []
    for group in groups:
        sizes = {a.frames[0].size for a in group}
        if len(sizes) != 1:
            raise InvalidInputError("a shared anchor needs every animation at one frame size; "
                                    "use separate anchors or frames of one size")
        left, top, right, bottom = union_box([f for a in group for f in a.frames])
        source = (right - left, bottom - top)
        pivot = (((left + right) / 2 - left) / source[0], 1.0)  # bottom-centre of the union
        for animation in group:
            for index, frame in enumerate(animation.frames):
                canvas = frame.convert("RGBA").crop((left, top, right, bottom))
                box = content_box(canvas) if options.trim else (0, 0, *source)
                box = box or (0, 0, 1, 1)
                cuts.append(_Cut(animation, index, canvas.crop(box), (box[0], box[1]), source, pivot))
    return cuts


def _next_power_of_two(value: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(value, 1))))


def _pack_rects(sizes: list[tuple[int, int]], options: PackingSettings) -> list[tuple[int, int, int]]:
    """(page, x, y) of each reserved rectangle."""
    limit = options.max_size
    for width, height in sizes:
        if width > limit or height > limit:
            raise InvalidInputError(f"a frame of {width}x{height} (with padding/extrusion) does not fit a "
                                    f"{limit}x{limit} page: raise max_size")
    if options.layout == "grid":
        cell_w, cell_h = max(w for w, _ in sizes), max(h for _, h in sizes)
        columns = options.columns or math.ceil(math.sqrt(len(sizes)))
        columns = max(1, min(columns, len(sizes), limit // cell_w))
        rows_per_page = max(1, limit // cell_h)
        places = []
        for index in range(len(sizes)):
            row, column = divmod(index, columns)
            page, row = divmod(row, rows_per_page)
            places.append((page, column * cell_w, row * cell_h))
        return places
    # Tight packing: the smallest square page (growing from the total area) that holds every frame, so pages
    # stay compact; at the size limit, as many pages as needed.
    area = sum(w * h for w, h in sizes)
    side = max(max(w for w, _ in sizes), max(h for _, h in sizes), math.ceil(math.sqrt(area)))
    while True:
        side = min(side, limit)
        places = _maxrects(sizes, side, single_page=side < limit)
        if places is not None:
            return places
        side = _next_power_of_two(side + 1) if options.power_of_two else math.ceil(side * 1.1) + 1


def _maxrects(sizes: list[tuple[int, int]], side: int, single_page: bool) -> list[tuple[int, int, int]] | None:
    import rectpack

    packer = rectpack.newPacker(mode=rectpack.PackingMode.Offline, bin_algo=rectpack.PackingBin.BFF,
                                pack_algo=rectpack.MaxRectsBssf, sort_algo=rectpack.SORT_AREA, rotation=False)
    for index, (width, height) in enumerate(sizes):
        packer.add_rect(width, height, rid=index)
    packer.add_bin(side, side, count=1 if single_page else float("inf"))
    packer.pack()
    places: list = [None] * len(sizes)
    for page, x, y, _w, _h, rid in packer.rect_list():
        places[rid] = (page, x, y)
    return None if any(place is None for place in places) else places


def build_atlas(animations: Sequence[Animation], options: PackingSettings = PackingSettings()) -> SpriteAtlas:
    """Anchor, trim and pack the animations' frames into one atlas (one or more pages)."""
    if not animations:
        raise InvalidInputError("no animations to pack")
    names = [a.name for a in animations]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"animation names must be unique, got {names}")
    cuts = _cut_frames(animations, options)
    grow = 2 * options.extrude + options.padding
    places = _pack_rects([(c.image.width + grow, c.image.height + grow) for c in cuts], options)
    page_count = max(page for page, _, _ in places) + 1
    extents = [[1, 1] for _ in range(page_count)]
    for cut, (page, x, y) in zip(cuts, places):
        extents[page][0] = max(extents[page][0], x + cut.image.width + 2 * options.extrude)
        extents[page][1] = max(extents[page][1], y + cut.image.height + 2 * options.extrude)
    if options.power_of_two:
        extents = [[_next_power_of_two(w), _next_power_of_two(h)] for w, h in extents]
    pages = [Image.new("RGBA", tuple(extent), (0, 0, 0, 0)) for extent in extents]
    frames = []
    for cut, (page, x, y) in zip(cuts, places):
        image = cut.image
        if options.extrude:
            array = cv2.copyMakeBorder(np.asarray(image), *(options.extrude,) * 4, cv2.BORDER_REPLICATE)
            pages[page].paste(Image.fromarray(array, "RGBA"), (x, y))
        else:
            pages[page].paste(image, (x, y))
        frames.append(PlacedFrame(
            name=frame_name(cut.animation.name, cut.index), animation=cut.animation.name, index=cut.index,
            page=page, x=x + options.extrude, y=y + options.extrude, width=image.width, height=image.height,
            offset_x=cut.offset[0], offset_y=cut.offset[1], source_width=cut.source[0],
            source_height=cut.source[1], pivot_x=cut.pivot[0], pivot_y=cut.pivot[1],
            duration_ms=round(1000 / cut.animation.fps),
        ))
    return SpriteAtlas(pages, frames, list(animations))


def restore_frame(atlas: SpriteAtlas, frame: PlacedFrame) -> Image.Image:
    """The frame as an engine shows it: cut from its page and placed back in its source canvas."""
    canvas = Image.new("RGBA", (frame.source_width, frame.source_height), (0, 0, 0, 0))
    cut = atlas.pages[frame.page].crop((frame.x, frame.y, frame.x + frame.width, frame.y + frame.height))
    canvas.paste(cut, (frame.offset_x, frame.offset_y))
    return canvas
