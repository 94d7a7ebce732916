"""Where one generation's results go (the layout the add-on and `spritediff generate` write): numbered frames
with their `generation.json`, and an animation's folder of frames, poses and sprite sheet. Above the sheet code,
which it calls; staged, so a run writes all of it or nothing."""

from __future__ import annotations

from pathlib import Path

from .atlas import Animation
from .settings import PackingSettings
from .sheet import write_sheet
from .staged_writes import MANIFEST, recorded_kind, staged_directory, write_json

# What a folder of outputs is (recorded with its files): a run replaces only outputs of its own kind.
FRAMES = "frames"  # `spritediff generate`
ANIMATION = "animation"  # the add-on: frames, poses and sheet of one Action (from one direction)
CHARACTER_SHEET = "character-sheet"  # the add-on: one sheet of every animation of a character
CHARACTER_SHEET_FOLDER = "sheet"


def frame_names(count: int) -> list[str]:
    return [f"frame_{index:04d}.png" for index in range(count)]


def save_frames(frames, directory: str | Path, settings: dict, inputs=(), keep_other_files: bool = False) -> list[str]:
    """Numbered PNG frames plus `generation.json` (the settings, and the files written), all or nothing;
    with `keep_other_files` beside files already in the folder (never over them)."""
    names = frame_names(len(frames))
    with staged_directory(directory, inputs, keep_other_files=keep_other_files, kind=FRAMES) as staging:
        for frame, name in zip(frames, names):
            frame.save(staging / name)
        write_json(staging / MANIFEST, {"files": names, **settings})
    return names


def save_animation(directory: str | Path, name: str, frames, settings: dict, fps: float, loop: bool,
                   pose_images=(), reference=None, packing: PackingSettings = PackingSettings(),
                   inputs=(), keep_other_files: bool = False) -> dict[str, Path]:
    """One animation's results, all or nothing: `frames/` (the generated PNGs + generation.json), `poses/`,
    and the sheet: transparent, anchored, trimmed atlas `<name>_atlas.png` with its metadata, and previews.
    Returns the paths written."""
    directory = Path(directory)
    names = frame_names(len(frames))
    basename = f"{name}_atlas"
    with staged_directory(directory, inputs, keep_other_files=keep_other_files, kind=ANIMATION) as staging:
        (staging / "frames").mkdir()
        for frame, frame_name in zip(frames, names):
            frame.save(staging / "frames" / frame_name)
        write_json(staging / "frames" / MANIFEST, {"files": names, "animation": name, "fps": fps, "loop": loop,
                                                   **settings})
        if pose_images:
            (staging / "poses").mkdir()
            for index, pose in enumerate(pose_images):
                pose.save(staging / "poses" / f"pose_{index:04d}.png")
        _, written = write_sheet([Animation(name, list(frames), fps, loop)], staging, basename, packing,
                                 reference)
        top_level = ["frames", *(p.name for p in written)] + (["poses"] if pose_images else [])
        write_json(staging / MANIFEST, {"files": top_level, "animation": name})
    pages = sorted(p.name for p in written if p.name.startswith(basename) and p.suffix == ".png")
    return {"frames": directory / "frames", "first_frame": directory / "frames" / names[0],
            "atlas": directory / pages[0], "atlas_pages": [directory / p for p in pages],
            "atlas_json": directory / f"{basename}.json" if (directory / f"{basename}.json").exists()
            else directory / f"{pages[0][:-4]}.json",
            "preview": directory / f"{name}.gif"}


def mirrored_frames(frames) -> list:
    """Frames flipped left to right: a sprite facing e made to face w (its left and right swap with it)."""
    from PIL import Image

    return [frame.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for frame in frames]


def animation_folders(parent: str | Path) -> list[Path]:
    """The animation folders spritediff wrote into `parent` (one per Action and direction), by name."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    return sorted(folder for folder in parent.iterdir()
                  if folder.is_dir() and not folder.is_symlink() and recorded_kind(folder) == ANIMATION)


def read_animation(folder: str | Path) -> Animation:
    """An animation folder's frames with the name, fps and loop recorded beside them."""
    import json

    from .errors import InvalidInputError
    from .staged_writes import open_image

    frames_folder = Path(folder) / "frames"
    try:
        record = json.loads((frames_folder / MANIFEST).read_text(encoding="utf-8"))
        names = [str(name) for name in record["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise InvalidInputError(f"{frames_folder}: no readable {MANIFEST} (was it written by spritediff?)") from None
    frames = [open_image(frames_folder / name, "frame") for name in names]
    return Animation(str(record.get("animation", Path(folder).name)), frames, float(record.get("fps", 8.0)),
                     bool(record.get("loop", True)))


def save_character_sheet(parent: str | Path, basename: str, packing: PackingSettings = PackingSettings(),
                         reference=None, inputs=()) -> dict[str, Path]:
    """One sheet of every animation spritediff wrote into `parent` (every Action and direction of one
    character), into `parent/sheet/`: pages, engine metadata (an animation, tag or SpriteFrames entry per
    Action and direction) and a preview per animation. Rewritten as a whole after each generation, all or
    nothing."""
    animations = [read_animation(folder) for folder in animation_folders(parent)]
    if not animations:
        from .errors import InvalidInputError

        raise InvalidInputError(f"{parent} holds no animation folders written by spritediff")
    directory = Path(parent) / CHARACTER_SHEET_FOLDER
    with staged_directory(directory, inputs, kind=CHARACTER_SHEET) as staging:
        _, written = write_sheet(animations, staging, f"{basename}_atlas", packing, reference)
        write_json(staging / MANIFEST, {"files": [p.name for p in written], "character": basename,
                                        "animations": [a.name for a in animations]})
    pages = sorted(p.name for p in written if p.name.startswith(f"{basename}_atlas") and p.suffix == ".png")
    return {"atlas": directory / pages[0], "atlas_pages": [directory / page for page in pages],
            "animations": [a.name for a in animations]}
