"""Staged writes: results land all at once or not at all, so a failure never leaves half-written output
behind; and reading the files users hand in, with errors that say what is wrong."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .errors import InvalidInputError, SpriteDiffError

MANIFEST = "generation.json"
OWNERSHIP = ".spritediff-files.json"  # what spritediff wrote into a folder, with each file's SHA-256
STAGING_PREFIX = ".spritediff-staging-"
RETIRED_PREFIX = ".spritediff-retired-"


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files_under(root: Path) -> dict[str, Path]:
    """{relative POSIX path: path} of every file below `root` (symlinks count as files, never followed)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or path.is_file():
            found[path.relative_to(root).as_posix()] = path
    return found


def _owned_files(destination: Path, kind: str) -> dict[str, str]:
    """{relative path: SHA-256} that spritediff recorded writing into `destination` as outputs of this kind
    ({} if none: another command's outputs, such as frames a sheet would replace, are never ours to remove)."""
    record = destination / OWNERSHIP
    try:
        content = json.loads(record.read_text(encoding="utf-8"))
        files = content.get("files", {}) if content.get("kind") == kind else {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {name: digest for name, digest in files.items() if isinstance(name, str) and isinstance(digest, str)} \
        if isinstance(files, dict) else {}


def recorded_kind(folder: str | Path) -> str | None:
    """The kind of outputs spritediff recorded writing into `folder` (None: none recorded)."""
    try:
        content = json.loads((Path(folder) / OWNERSHIP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = content.get("kind") if isinstance(content, dict) else None
    return kind if isinstance(kind, str) else None


def _ours(destination: Path, name: str, owned: dict[str, str]) -> bool:
    """Whether the top-level entry `name` holds only files spritediff wrote, unchanged since (by hash)."""
    path = destination / name
    if path.is_dir() and not path.is_symlink():
        if not any(recorded.startswith(name + "/") for recorded in owned):
            return False
        inside = _files_under(path)
        return all(f"{name}/{relative}" in owned and not file.is_symlink()
                   and _sha256(file) == owned[f"{name}/{relative}"] for relative, file in inside.items())
    return name in owned and path.is_file() and not path.is_symlink() and _sha256(path) == owned[name]


def check_output_folder(destination: str | Path, inputs: Sequence[str | Path] = (),
                        replace_previous_run: bool = True, keep_other_files: bool = False,
                        planned: Sequence[str] = (), kind: str = "output") -> Path:
    """Everything about an output folder that can be known before any work: it is not a file, it is
    writable, it is not one of the inputs nor inside one, and whatever it holds was written by spritediff
    (unchanged since) when a previous run is to be replaced; with `keep_other_files` other files may stay
    beside the outputs, but never under a name the run will write (`planned`: the top-level names it knows
    it will write; `kind`: which command's outputs may be replaced). Raises InvalidInputError; returns the
    path."""
    destination = Path(destination).absolute()
    if destination.is_symlink() and not destination.exists():
        raise InvalidInputError(f"output folder {destination} is a broken link: remove it or choose another folder")
    if destination.exists() and not destination.is_dir():
        raise InvalidInputError(f"output folder {destination} is a file: choose a folder")
    real = destination.resolve()  # through links: a link to an input is that input
    for source in inputs:
        source = Path(source).resolve()
        if source == real or (source.is_dir() and real.is_relative_to(source)):
            where = "the" if source == real else "inside the"
            raise InvalidInputError(f"output folder {destination} is {where} input {source}: "
                                    "choose a folder outside the inputs")
        if source.is_file() and source.is_relative_to(real):
            raise InvalidInputError(f"output folder {destination} holds the input {source}: "
                                    "choose a folder outside the inputs")
    existing = destination
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInputError(f"cannot write into {existing}: choose a folder you can write to")
    if destination.is_dir():
        owned = _owned_files(destination, kind) if replace_previous_run else {}
        _refuse_foreign(destination, [name for name in _entries(destination)
                                      if (not keep_other_files or name in planned)
                                      and not _ours(destination, name, owned)], keep_other_files)
    return destination


def _entries(destination: Path) -> list[str]:
    """The top-level names in an output folder, without spritediff's own bookkeeping."""
    return [entry.name for entry in sorted(destination.iterdir())
            if entry.name != OWNERSHIP and not entry.name.startswith((STAGING_PREFIX, RETIRED_PREFIX))]


def _refuse_foreign(destination: Path, foreign: list[str], keep_other_files: bool) -> None:
    if foreign:
        raise InvalidInputError(
            f"output folder {destination} already holds {', '.join(foreign[:5])}"
            f"{' and more' if len(foreign) > 5 else ''}, not written by spritediff (or changed since): "
            "choose an empty or new folder" + ("" if keep_other_files else ", or add to this one (--add-to-folder)"))


def add_output_arguments(parser: argparse.ArgumentParser, help: str) -> None:
    """--out, and the one way to write into a folder that already holds other files."""
    parser.add_argument("--out", required=True, help=help)
    parser.add_argument("--add-to-folder", action="store_true",
                        help="write beside files already in the output folder (never over them; without this, a "
                             "folder holding files spritediff did not write is refused)")


@contextmanager
def staged_directory(destination: str | Path, inputs: Sequence[str | Path] = (),
                     replace_previous_run: bool = True, keep_other_files: bool = False,
                     kind: str = "output") -> Iterator[Path]:
    """Yield an empty staging folder inside `destination` (so on its filesystem); on success its contents
    replace spritediff's own previous outputs there, on error nothing changes.

    Only files spritediff recorded writing (`.spritediff-files.json`, with hashes) and that are unchanged are
    ever replaced or removed, and only after the new outputs are in place; a folder holding anything else is
    refused (before any work when the caller runs `check_output_folder` first, as the commands do).
    """
    destination = check_output_folder(destination, inputs, replace_previous_run, keep_other_files, kind=kind)
    created = [folder for folder in (destination, *destination.parents) if not folder.exists()]
    destination.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=destination))
    retired, moved_in = None, []
    try:
        yield staging
        # What the folder holds now (something may have arrived during the run), each entry hashed once.
        owned = _owned_files(destination, kind) if replace_previous_run else {}
        ours = {name: _ours(destination, name, owned) for name in _entries(destination)}
        new_entries = sorted(p.name for p in staging.iterdir())
        _refuse_foreign(destination, [name for name, mine in ours.items()
                                      if not mine and (name in new_entries or not keep_other_files)],
                        keep_other_files)
        written = {name: _sha256(path) for name, path in _files_under(staging).items()}
        retired = Path(tempfile.mkdtemp(prefix=RETIRED_PREFIX, dir=destination))
        # Old outputs step aside (renames on one filesystem), the new ones move in; then the old ones go.
        for name in (name for name, mine in ours.items() if mine):
            os.replace(destination / name, retired / name)
        for name in new_entries:
            os.replace(staging / name, destination / name)
            moved_in.append(name)
        write_json(destination / OWNERSHIP, {"kind": kind, "files": written})
    except BaseException:
        for name in moved_in:  # this run's own new files out again, the old outputs back in
            new = destination / name
            shutil.rmtree(new) if new.is_dir() and not new.is_symlink() else new.unlink(missing_ok=True)
        if retired is not None:
            for path in retired.iterdir():
                os.replace(path, destination / path.name)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
        for folder in created:  # folders this call made, if a failure left them empty
            try:
                folder.rmdir()
            except OSError:
                break


MAX_IMAGE_PIXELS = 64_000_000  # 8000 x 8000: far above any sprite or reference, well below a memory blow-up


def open_image(path: str | Path, what: str = "image"):
    """A fully read picture as RGB or RGBA, upright as shown (EXIF orientation applied), 16-bit and float
    pictures scaled to 8 bits, palette and grey pictures converted with their transparency; an animated file
    gives its first frame. Anything else is a SpriteDiffError saying what is wrong with the file."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise InvalidInputError(f"{what} {path} is {image.width}x{image.height} pixels: more than "
                                            f"{MAX_IMAGE_PIXELS // 1_000_000} million; scale it down")
                image.seek(0)  # an animated file: its first frame
                image.load()
                upright = ImageOps.exif_transpose(image)
                return _to_8_bit(upright)
    except FileNotFoundError:
        raise SpriteDiffError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise SpriteDiffError(f"{what} {path} is a folder, not an image file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InvalidInputError(f"{what} {path} is too large to open safely; scale it down") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise SpriteDiffError(f"{what} {path} is not a readable image ({error})") from None


def _to_8_bit(image):
    """RGB or RGBA with 8 bits per channel, whatever the file's mode (I;16, I, F, P, L, LA, CMYK...)."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == "F" and values.max(initial=0) <= 1.0 else \
            65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode in ("RGBA", "RGB"):
        return image.copy()
    has_alpha = image.mode in ("LA", "PA", "RGBa", "La") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
