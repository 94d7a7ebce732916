"""Reading a training dataset as `python -m blender_addon dataset` writes it (the layout is documented there
and in the README's "Training data"): a folder per character with reference views and clips of frames,
pose images and `poses.json`.

Only plain paths and JSON here: training (`training/data.py`) and evaluation decide how to load pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .directions import nearest_by_angle
from .errors import InvalidInputError

DATASET_FORMAT = "spritediff-dataset"
# Reference pictures and the azimuth each is seen from: degrees from the character's front, turning towards
# its right (90: the presets' side view), as the ring views "dir_DDD" of the clips.
REFERENCE_AZIMUTHS = {"front": 0.0, "three_quarter": 45.0, "side": 90.0}
REFERENCE_VIEWS = tuple(REFERENCE_AZIMUTHS)


def nearest_reference(azimuth: float, available) -> str:
    """The reference view among `available` seen from nearest `azimuth` (ties: the first in REFERENCE_VIEWS)."""
    nearest = nearest_by_angle(azimuth, REFERENCE_AZIMUTHS, available)
    if nearest is None:
        raise InvalidInputError("no reference picture with a known view (front, three_quarter, side)")
    return nearest


@dataclass(frozen=True)
class Clip:
    """One motion seen from one view: ground-truth frames and their poses, in order."""

    name: str
    directory: Path
    info: dict[str, Any]
    frame_paths: tuple[Path, ...]
    pose_paths: tuple[Path, ...]

    @property
    def poses_json(self) -> Path:
        return self.directory / "poses.json"

    @property
    def view_name(self) -> str:
        return str(self.info.get("view", {}).get("name", "unknown"))

    @property
    def azimuth(self) -> float | None:
        """Degrees from the character's front (see REFERENCE_AZIMUTHS), None when the clip does not say."""
        value = self.info.get("view", {}).get("azimuth_deg")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def motion(self) -> str:
        return str(self.info.get("motion", "unknown"))

    @property
    def loop(self) -> bool:
        return bool(self.info.get("loop", True))


@dataclass(frozen=True)
class Character:
    name: str
    directory: Path
    info: dict[str, Any]
    references: dict[str, Path]
    clips: tuple[Clip, ...]


@dataclass(frozen=True)
class Dataset:
    root: Path
    info: dict[str, Any]
    characters: tuple[Character, ...] = field(default_factory=tuple)

    @property
    def size(self) -> tuple[int, int]:
        width, height = self.info.get("size", (0, 0))
        return int(width), int(height)

    def clips(self) -> list[tuple[Character, Clip]]:
        return [(character, clip) for character in self.characters for clip in character.clips]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{path} is missing: not {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a JSON object")
    return data


def _read_clip(directory: Path) -> Clip:
    info = _read_json(directory / "clip.json", "a dataset clip")
    frames = tuple(sorted(directory.glob("frame_*.png")))
    poses = tuple(sorted(directory.glob("pose_*.png")))
    if not frames:
        raise InvalidInputError(f"clip {directory} has no frame_*.png")
    if len(frames) != len(poses):
        raise InvalidInputError(f"clip {directory} has {len(frames)} frames but {len(poses)} pose images")
    if not (directory / "poses.json").is_file():
        raise InvalidInputError(f"clip {directory} has no poses.json")
    return Clip(directory.name, directory, info, frames, poses)


def _read_character(directory: Path) -> Character:
    info = _read_json(directory / "character.json", "a dataset character")
    references = {view: directory / relative for view, relative in (info.get("references") or {}).items()}
    missing = [str(path) for path in references.values() if not path.is_file()]
    if missing:
        raise InvalidInputError(f"character {directory.name}: missing reference pictures {missing}")
    names = info.get("clips") or sorted(p.name for p in (directory / "clips").iterdir() if p.is_dir())
    clips = tuple(_read_clip(directory / "clips" / name) for name in names)
    if not clips:
        raise InvalidInputError(f"character {directory.name} has no clips")
    return Character(directory.name, directory, info, references, clips)


def load_dataset(path: str | Path) -> Dataset:
    """The dataset at `path` (its `dataset.json` lists the complete characters), checked file by file."""
    root = Path(path)
    if not root.is_dir():
        raise InvalidInputError(f"dataset folder {root} does not exist")
    info = _read_json(root / "dataset.json", "a spritediff dataset (made by `python -m blender_addon dataset`)")
    if info.get("format") != DATASET_FORMAT:
        raise InvalidInputError(f"{root / 'dataset.json'}: format is {info.get('format')!r}, "
                                f"expected {DATASET_FORMAT!r}")
    characters = tuple(_read_character(root / name) for name in info.get("characters", []))
    if not characters:
        raise InvalidInputError(f"dataset {root} has no complete characters yet")
    return Dataset(root, info, characters)
