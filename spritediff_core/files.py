"""Writing results so that a failure never leaves half-written output behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InvalidInputError, SpriteDiffError

MANIFEST = "generation.json"


@contextmanager
def staged_directory(destination: str | Path, replace_previous_run: bool = True) -> Iterator[Path]:
    """Yield an empty staging folder; on success its files move into `destination`, on error nothing changes.

    Files listed by a previous run's manifest in `destination` are removed first, so a shorter new run
    does not leave old frames behind; other files already there are kept, and never silently overwritten.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        yield staging
        previous = _previous_outputs(destination) if replace_previous_run else set()
        clashes = [p.name for p in staging.iterdir() if (destination / p.name).exists() and p.name not in previous]
        if clashes:
            raise InvalidInputError(
                f"{destination} already holds {', '.join(sorted(clashes)[:5])} not written by spritediff: "
                "choose an empty output folder"
            )
        destination.mkdir(parents=True, exist_ok=True)
        for name in previous:
            old = destination / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
        for path in sorted(staging.iterdir()):
            os.replace(path, destination / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _previous_outputs(destination: Path) -> set[str]:
    manifest = destination / MANIFEST
    if not manifest.is_file():
        return set()
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {Path(name).name for name in files if isinstance(name, str)} | {MANIFEST}


def open_image(path: str | Path, what: str = "image"):
    """A fully read PIL image, or a SpriteDiffError saying what is wrong with the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise SpriteDiffError(f"{what} {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as error:
        raise SpriteDiffError(f"{what} {path} is not a readable image ({error})") from None


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def frame_names(count: int) -> list[str]:
    return [f"frame_{index:04d}.png" for index in range(count)]


def save_frames(frames, directory: str | Path, settings: dict) -> list[str]:
    """Numbered PNG frames plus `generation.json` (the settings, and the files written), all or nothing."""
    names = frame_names(len(frames))
    with staged_directory(directory) as staging:
        for frame, name in zip(frames, names):
            frame.save(staging / name)
        write_json(staging / MANIFEST, {"files": names, **settings})
    return names


def save_animation(directory: str | Path, name: str, frames, settings: dict, fps: float, loop: bool,
                   pose_images=(), reference=None, sheet_options=None) -> dict[str, Path]:
    """One animation's results, all or nothing: `frames/` (the generated PNGs + generation.json), `poses/`,
    and the sheet: transparent, anchored, trimmed atlas `<name>_atlas.png` with its metadata, and previews.
    Returns the paths written."""
    from dataclasses import replace

    from .atlas import Animation
    from .sheet import SheetOptions, write_sheet

    directory = Path(directory)
    names = frame_names(len(frames))
    options = replace(sheet_options or SheetOptions(), reference=reference)
    basename = f"{name}_atlas"
    with staged_directory(directory) as staging:
        (staging / "frames").mkdir()
        for frame, frame_name in zip(frames, names):
            frame.save(staging / "frames" / frame_name)
        write_json(staging / "frames" / MANIFEST, {"files": names, "animation": name, "fps": fps, "loop": loop,
                                                   **settings})
        if pose_images:
            (staging / "poses").mkdir()
            for index, pose in enumerate(pose_images):
                pose.save(staging / "poses" / f"pose_{index:04d}.png")
        _, written = write_sheet([Animation(name, list(frames), fps, loop)], staging, basename, options)
        top_level = ["frames", *(p.name for p in written)] + (["poses"] if pose_images else [])
        write_json(staging / MANIFEST, {"files": top_level, "animation": name})
    pages = sorted(p.name for p in written if p.name.startswith(basename) and p.suffix == ".png")
    return {"frames": directory / "frames", "first_frame": directory / "frames" / names[0],
            "atlas": directory / pages[0], "atlas_pages": [directory / p for p in pages],
            "atlas_json": directory / f"{basename}.json" if (directory / f"{basename}.json").exists()
            else directory / f"{pages[0][:-4]}.json",
            "preview": directory / f"{name}.gif"}
