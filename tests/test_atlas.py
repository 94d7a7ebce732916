"""Sprite sheets: transparency, anchors and trimming, packing, metadata, previews, pixel-art finishing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sprites import alpha_of, on_black, sprite

from spritediff_core.atlas import Animation, build_atlas, restore_frame, union_box
from spritediff_core.cli import main
from spritediff_core.engine_formats import aseprite, godot_tres, texturepacker, write_atlas
from spritediff_core.errors import InvalidInputError
from spritediff_core.matting import OutlineHint, alpha_iou, matte_frame
from spritediff_core.pixelart import add_outline, apply_palette, build_palette, scale_to_height
from spritediff_core.previews import save_preview
from spritediff_core.settings import PackingSettings


# ---------------------------------------------------------------- transparency
@pytest.mark.parametrize("seed, outline", [(1, 0), (2, 0), (3, 1), (4, 2), (5, 3), (6, 2)])
def test_alpha_comes_back_from_black(seed, outline):
    truth = sprite(seed, outline=outline)
    reference = truth.resize((512, 512), Image.Resampling.LANCZOS)  # the picture the frames were made from
    matted = matte_frame(on_black(truth, seed=seed), OutlineHint.from_reference(reference))
    assert alpha_iou(alpha_of(truth), alpha_of(matted)) >= 0.98


@pytest.mark.parametrize("seed, outline_colour", [(8, (0, 0, 0)), (9, (42, 36, 40)), (10, (20, 24, 46))])
def test_an_outline_thinner_than_a_pixel_keeps_its_rim(seed, outline_colour):
    """A 1 px outline drawn at twice the frame's size: the frame's edge pixels are part outline, part
    background, and the silhouette (alpha > 0.5) must still come back whole, in the outline's colour."""
    reference = sprite(seed, size=256, outline=1, outline_colour=outline_colour)
    truth = reference.resize((128, 128), Image.Resampling.BOX)
    matted = matte_frame(on_black(truth, seed=seed), OutlineHint.from_reference(reference))
    expected, found = alpha_of(truth) > 0.5, alpha_of(matted) > 0.5
    assert (expected & found).sum() / (expected | found).sum() >= 0.98
    rim = expected & found & (alpha_of(truth) < 0.99)
    colour_error = np.abs(np.asarray(matted)[rim][:, :3].astype(int) - np.asarray(truth)[rim][:, :3]).mean()
    assert colour_error < 16


def test_dark_details_inside_stay_opaque_and_edges_have_no_black_fringe():
    truth = sprite(7)
    matted = np.asarray(matte_frame(on_black(truth, noise=0)))
    expected = np.asarray(truth)
    hair = expected[..., 0] == 38  # a dark detail well inside
    assert hair.any() and (matted[hair][:, 3] == 255).all()
    edge = (expected[..., 3] > 40) & (expected[..., 3] < 215)
    colour_error = np.abs(matted[edge][:, :3].astype(int) - expected[edge][:, :3].astype(int)).mean()
    assert colour_error < 12  # edge pixels keep the character's colour, not a darkened one


def test_outline_hint_measures_the_reference():
    assert OutlineHint.from_reference(sprite(3, outline=0)).thickness == 0
    hint = OutlineHint.from_reference(sprite(3, outline=3))
    assert round(hint.thickness * 256) == 3 and hint.darkness < 20
    assert OutlineHint.from_reference(sprite(3).convert("RGB")).thickness == 0  # no alpha, no hint


def test_alpha_none_keeps_the_frame():
    frame = on_black(sprite(1))
    assert np.asarray(matte_frame(frame, mode="none"))[..., 3].min() == 255
    with pytest.raises(InvalidInputError):
        matte_frame(frame, mode="magic")


# ---------------------------------------------------------------- anchors, trimming, packing
def walk_and_jump(size=128):
    walk = Animation("walk", [sprite(10 + i, size, shift=(3 * i - 6, 0), scale=0.8) for i in range(5)], 10, True)
    jump = Animation("jump", [sprite(20 + i, size, shift=(0, -8 * i), scale=0.6) for i in range(4)], 8, False)
    return [walk, jump]


def walk_in_four_directions(size=128):
    """One action in four directions, named as a --directions 4 run names them (walk_s, walk_e, ...)."""
    return [Animation(f"walk_{direction}", [sprite(30 + 5 * k + i, size, shift=(3 * i - 3, 0), scale=0.7)
                                            for i in range(3)], 10, True)
            for k, direction in enumerate(("s", "e", "n", "w"))]


def assert_no_pixel_lost_or_overlapping(atlas, animations, options):
    sources = {(a.name, i): f for a in animations for i, f in enumerate(a.frames)}
    occupied = [np.zeros((p.height, p.width), bool) for p in atlas.pages]
    for frame in atlas.frames:
        x0, y0 = frame.x - options.extrude, frame.y - options.extrude
        x1, y1 = frame.x + frame.width + options.extrude, frame.y + frame.height + options.extrude
        assert not occupied[frame.page][y0:y1, x0:x1].any(), f"{frame.name} overlaps another frame"
        occupied[frame.page][y0:y1, x0:x1] = True
        # Cut back out and put in place: exactly the source frame inside its union box.
        source = sources[(frame.animation, frame.index)]
        left, top, right, bottom = union_box([f for a in animations for f in a.frames])
        expected = np.asarray(source.crop((left, top, right, bottom)))
        assert np.array_equal(np.asarray(restore_frame(atlas, frame)), expected), frame.name


@pytest.mark.parametrize("options", [
    PackingSettings(),
    PackingSettings(layout="grid", columns=3, padding=0),
    PackingSettings(padding=4, extrude=2, power_of_two=True),
    PackingSettings(max_size=150, padding=1),  # several pages
    PackingSettings(trim=False, layout="grid"),
])
def test_packed_pages_keep_every_pixel(options):
    animations = walk_and_jump()
    atlas = build_atlas(animations, options)
    assert len(atlas.frames) == 9
    assert_no_pixel_lost_or_overlapping(atlas, animations, options)
    for page in atlas.pages:
        assert page.width <= options.max_size and page.height <= options.max_size
        if options.power_of_two:
            assert page.width & (page.width - 1) == 0 and page.height & (page.height - 1) == 0
    if options.max_size == 150:
        assert len(atlas.pages) > 1


def test_extrusion_repeats_edge_pixels():
    animations = walk_and_jump()
    atlas = build_atlas(animations, PackingSettings(extrude=2, padding=0))
    frame = atlas.frames[0]
    page = np.asarray(atlas.pages[frame.page])
    np.testing.assert_array_equal(page[frame.y, frame.x - 2:frame.x], np.repeat(page[frame.y, frame.x][None], 2, 0))


def test_anchor_is_steady_and_trim_offsets_restore_positions():
    animations = walk_and_jump()
    atlas = build_atlas(animations, PackingSettings())
    sources = {(f.source_width, f.source_height) for f in atlas.frames}
    pivots = {(f.pivot_x, f.pivot_y) for f in atlas.frames}
    assert len(sources) == 1 and len(pivots) == 1 and next(iter(pivots))[1] == 1.0  # one anchor, bottom-centre
    assert any(f.trimmed for f in atlas.frames)
    separate = build_atlas(animations, PackingSettings(shared_anchor=False))
    per_animation = {(f.animation, f.source_width, f.source_height) for f in separate.frames}
    assert len(per_animation) == 2


def test_frames_too_large_for_a_page_are_an_error():
    with pytest.raises(InvalidInputError, match="does not fit"):
        build_atlas(walk_and_jump(), PackingSettings(max_size=32))


# ---------------------------------------------------------------- metadata
def test_texturepacker_hash_and_array_round_trip(tmp_path):
    animations = walk_and_jump()
    atlas = build_atlas(animations, PackingSettings(max_size=150, padding=1))
    for array in (False, True):
        documents = texturepacker(atlas, "hero", array=array)
        assert len(documents) == len(atlas.pages)
        seen = {}
        for name, document in documents.items():
            entries = document["frames"] if not array else {e["filename"]: e for e in document["frames"]}
            assert set(document["meta"]["related_multi_packs"]) == set(documents) - {name}
            for frame_name, entry in entries.items():
                seen[frame_name] = entry
        assert set(seen) == {f.name for f in atlas.frames}
        for frame in atlas.frames:
            entry = seen[frame.name]
            assert entry["frame"] == {"x": frame.x, "y": frame.y, "w": frame.width, "h": frame.height}
            assert entry["spriteSourceSize"]["x"] == frame.offset_x and entry["sourceSize"]["w"] == frame.source_width
            assert entry["duration"] == (100 if frame.animation == "walk" else 125)
            assert entry["pivot"]["y"] == 1.0
        all_animations = {}
        for document in documents.values():
            for name, names in document["animations"].items():
                all_animations.setdefault(name, []).extend(names)
        assert sorted(all_animations["walk"]) == [f"walk_{i:04d}" for i in range(5)]


def test_aseprite_tags_durations_and_one_page():
    atlas = build_atlas(walk_and_jump(), PackingSettings())
    document = next(iter(aseprite(atlas, "hero").values()))
    tags = document["meta"]["frameTags"]
    assert [(t["name"], t["from"], t["to"], t["direction"]) for t in tags] == [("walk", 0, 4, "forward"),
                                                                                ("jump", 5, 8, "forward")]
    assert "repeat" not in tags[0] and tags[1]["repeat"] == "1"
    assert [document["frames"][str(i)]["duration"] for i in range(9)] == [100] * 5 + [125] * 4
    with pytest.raises(InvalidInputError, match="one page"):
        aseprite(build_atlas(walk_and_jump(), PackingSettings(max_size=150)), "hero")


@pytest.mark.parametrize("make_animations", [walk_and_jump, walk_in_four_directions])
def test_godot_spriteframes_parse_with_a_godot_parser(make_animations):
    from godot_parser import parse

    made = make_animations()
    atlas = build_atlas(made, PackingSettings(max_size=150))
    text = next(iter(godot_tres(atlas, "hero").values()))
    resource = parse(text)
    sections = resource.get_sections()
    textures = {s.header.attributes["id"]: s for s in sections if s.header.attributes.get("type") == "AtlasTexture"}
    externals = [s for s in sections if s.header.name == "ext_resource"]
    assert [e.header.attributes["path"] for e in externals] == [f"res://hero-{i}.png" for i in range(len(atlas.pages))]
    animations = sections[-1]["animations"]
    assert [(a["name"], a["loop"], a["speed"]) for a in animations] == [(a.name, a.loop, a.fps) for a in made]
    for animation in animations:
        placed = atlas.frames_of(animation["name"])
        for entry, frame in zip(animation["frames"], placed):
            texture = textures[entry["texture"].id]
            assert list(texture["region"].args) == [frame.x, frame.y, frame.width, frame.height]
            assert list(texture["margin"].args)[:2] == [frame.offset_x, frame.offset_y]
            assert texture["atlas"].id == str(frame.page + 1)


# ---------------------------------------------------------------- previews and pixel art
@pytest.mark.parametrize("fmt, suffix", [("gif", ".gif"), ("apng", ".png"), ("webp", ".webp")])
@pytest.mark.parametrize("loop", [True, False])
def test_previews_have_frame_time_and_looping(tmp_path, fmt, suffix, loop):
    frames = [sprite(i, 64) for i in range(4)]
    path = save_preview(frames, tmp_path / f"anim{suffix}", fps=10, loop=loop, fmt=fmt)
    image = Image.open(path)
    durations = []
    for index in range(image.n_frames):
        image.seek(index)
        image.load()
        durations.append(image.info.get("duration"))
    assert image.n_frames == 4 and durations == [100] * 4
    if fmt == "gif":
        assert ("loop" in image.info) == loop
    else:
        assert image.info.get("loop") == (0 if loop else 1)


def test_pixel_art_finishing():
    frames = [sprite(30 + i, 128, scale=0.7) for i in range(3)]
    small = scale_to_height(frames, 32)
    left, top, right, bottom = union_box(small)
    assert abs((bottom - top) - 32) <= 1
    assert set(np.unique(np.asarray(small[0])[..., 3])) <= {0, 255}  # hard alpha
    palette = build_palette(small, 8)
    mapped = apply_palette(small, palette)
    colours = {tuple(p[:3]) for f in mapped for p in f.getdata() if p[3] == 255}
    assert 2 <= len(colours) <= 8  # one palette shared by every frame
    outlined = add_outline(mapped, (0, 0, 0))
    before = (np.asarray(mapped[0])[..., 3] == 255).sum()
    after = (np.asarray(outlined[0])[..., 3] == 255).sum()
    assert after > before


# ---------------------------------------------------------------- the pack command
def write_frames(folder, animation, settings=None):
    folder.mkdir(parents=True)
    for index, frame in enumerate(animation.frames):
        on_black(frame, seed=index).save(folder / f"frame_{index:04d}.png")
    if settings is not None:
        (folder / "generation.json").write_text(json.dumps(settings))


def test_pack_command(tmp_path):
    walk, jump = walk_and_jump()
    write_frames(tmp_path / "walk", walk, {"fps": 10, "loop": True})
    write_frames(tmp_path / "jump", jump, {"fps": 8, "loop": False})
    out = tmp_path / "sheet"
    assert main(["pack", str(tmp_path / "walk"), str(tmp_path / "jump"), "--out", str(out), "--format",
                 "aseprite", "--previews", "gif,webp", "--pixel-height", "48", "--palette", "16"]) == 0
    document = json.loads((out / "atlas.json").read_text())
    assert [t["name"] for t in document["meta"]["frameTags"]] == ["walk", "jump"]
    assert document["frames"]["0"]["duration"] == 100 and document["frames"]["5"]["duration"] == 125
    assert (out / "walk.gif").is_file() and (out / "jump.webp").is_file()
    assert Image.open(out / "atlas.png").mode == "RGBA"
    assert main(["pack", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()


def test_write_atlas_rejects_unknown_formats(tmp_path):
    with pytest.raises(InvalidInputError, match="format"):
        write_atlas(build_atlas(walk_and_jump()), tmp_path, "x", "unity")
