"""Atlas metadata in the formats game engines read.

- TexturePacker JSON, hash and array (Phaser, Pixi): `frames`, `animations`, per-frame `pivot`, trim data;
  one JSON per page, linked by `meta.related_multi_packs` (Pixi's convention for several pages).
- Aseprite JSON (Phaser's `load.aseprite` + `anims.createFromAseprite`): frames in order with their
  duration in ms, `frameTags` with direction, and `repeat` "1" for one-shots. One page only.
- Godot 4 SpriteFrames `.tres`: an AtlasTexture per frame (region, and margin to restore trimmed frames),
  animations with speed and loop. Animation names are written as plain strings (Godot 4 converts them to
  StringName on load), which keeps the file readable by Godot 3-era parsers too.
"""

from __future__ import annotations

import json
from pathlib import Path

from .atlas import PlacedFrame, SpriteAtlas
from .errors import InvalidInputError

FORMATS = ("texturepacker-hash", "texturepacker-array", "aseprite", "godot")
APP = "spritediff"


def _frame_entry(frame: PlacedFrame) -> dict:
    return {
        "frame": {"x": frame.x, "y": frame.y, "w": frame.width, "h": frame.height},
        "rotated": False,
        "trimmed": frame.trimmed,
        "spriteSourceSize": {"x": frame.offset_x, "y": frame.offset_y, "w": frame.width, "h": frame.height},
        "sourceSize": {"w": frame.source_width, "h": frame.source_height},
        "pivot": {"x": round(frame.pivot_x, 6), "y": round(frame.pivot_y, 6)},
        "duration": frame.duration_ms,
    }


def _meta(atlas: SpriteAtlas, page: int, image: str) -> dict:
    return {"app": APP, "version": "1.0", "image": image, "format": "RGBA8888",
            "size": {"w": atlas.pages[page].width, "h": atlas.pages[page].height}, "scale": "1"}


def page_names(basename: str, pages: int) -> list[str]:
    return [f"{basename}.png"] if pages == 1 else [f"{basename}-{index}.png" for index in range(pages)]


def texturepacker(atlas: SpriteAtlas, basename: str, array: bool = False) -> dict[str, dict]:
    """{json file name: content} for every page."""
    images = page_names(basename, len(atlas.pages))
    jsons = [name[:-4] + ".json" for name in images]
    documents = {}
    for page, (image, json_name) in enumerate(zip(images, jsons)):
        frames = [f for f in atlas.frames if f.page == page]
        meta = _meta(atlas, page, image)
        meta["related_multi_packs"] = [name for name in jsons if name != json_name]
        animations = {a.name: [f.name for f in frames if f.animation == a.name] for a in atlas.animations}
        document = {
            "frames": [{"filename": f.name, **_frame_entry(f)} for f in frames] if array
            else {f.name: _frame_entry(f) for f in frames},
            "animations": {name: names for name, names in animations.items() if names},
            "meta": meta,
        }
        document["meta"]["frameRates"] = {a.name: a.fps for a in atlas.animations}
        document["meta"]["loops"] = {a.name: a.loop for a in atlas.animations}
        documents[json_name] = document
    return documents


def aseprite(atlas: SpriteAtlas, basename: str) -> dict[str, dict]:
    if len(atlas.pages) != 1:
        raise InvalidInputError(f"the Aseprite format holds one page; these frames need {len(atlas.pages)}: "
                                "raise max_size, trim, or use TexturePacker JSON")
    tags, start = [], 0
    for animation in atlas.animations:
        count = len(atlas.frames_of(animation.name))
        tag = {"name": animation.name, "from": start, "to": start + count - 1, "direction": "forward",
               "color": "#000000ff"}
        if not animation.loop:
            tag["repeat"] = "1"  # Aseprite 1.3: play once
        tags.append(tag)
        start += count
    meta = _meta(atlas, 0, page_names(basename, 1)[0])
    meta.update({"app": "https://www.aseprite.org/", "version": "1.3", "frameTags": tags, "layers": [],
                 "slices": []})
    # Keys are the frame numbers, as Aseprite writes with --filename-format '{frame}' and as Phaser's
    # createFromAseprite looks frames up.
    return {f"{basename}.json": {"frames": {str(i): _frame_entry(f) for i, f in enumerate(atlas.frames)},
                                 "meta": meta}}


def godot_tres(atlas: SpriteAtlas, basename: str, resource_dir: str = "res://") -> dict[str, str]:
    """A Godot 4 SpriteFrames resource; textures are looked up at `resource_dir` + page name."""
    images = page_names(basename, len(atlas.pages))
    lines = [f'[gd_resource type="SpriteFrames" load_steps={len(images) + len(atlas.frames) + 1} format=3]', ""]
    for index, image in enumerate(images):
        lines.append(f'[ext_resource type="Texture2D" path="{resource_dir}{image}" id="{index + 1}"]')
    lines.append("")
    for number, frame in enumerate(atlas.frames):
        margin_right = frame.source_width - frame.width
        margin_bottom = frame.source_height - frame.height
        lines += [f'[sub_resource type="AtlasTexture" id="AtlasTexture_{number}"]',
                  f'atlas = ExtResource("{frame.page + 1}")',
                  f"region = Rect2({frame.x}, {frame.y}, {frame.width}, {frame.height})",
                  f"margin = Rect2({frame.offset_x}, {frame.offset_y}, {margin_right}, {margin_bottom})", ""]
    index_of = {frame.name: number for number, frame in enumerate(atlas.frames)}
    animations = []
    for animation in atlas.animations:
        frames = ", ".join(f'{{\n"duration": 1.0,\n"texture": SubResource("AtlasTexture_{index_of[f.name]}")\n}}'
                           for f in atlas.frames_of(animation.name))
        animations.append(f'{{\n"frames": [{frames}],\n"loop": {str(animation.loop).lower()},\n'
                          f'"name": "{animation.name}",\n"speed": {float(animation.fps)}\n}}')
    lines += ["[resource]", f"animations = [{', '.join(animations)}]", ""]
    return {f"{basename}.tres": "\n".join(lines)}


def write_atlas(atlas: SpriteAtlas, directory: str | Path, basename: str, fmt: str) -> list[Path]:
    """The page PNGs and the metadata of `fmt` into `directory`; returns the files written."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {FORMATS}, got {fmt!r}")
    directory = Path(directory)
    written = []
    for page, name in zip(atlas.pages, page_names(basename, len(atlas.pages))):
        page.save(directory / name)
        written.append(directory / name)
    if fmt == "godot":
        documents = godot_tres(atlas, basename)
    elif fmt == "aseprite":
        documents = aseprite(atlas, basename)
    else:
        documents = texturepacker(atlas, basename, array=fmt == "texturepacker-array")
    for name, content in documents.items():
        text = content if isinstance(content, str) else json.dumps(content, indent=1) + "\n"
        (directory / name).write_text(text, encoding="utf-8")
        written.append(directory / name)
    return written
