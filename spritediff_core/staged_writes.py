"""Staged writes: results land all at once or not at all, so a failure never leaves half-written output
behind; and reading the files users hand in, with errors that say what is wrong."""

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
