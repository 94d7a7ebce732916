"""Bone maps: how an armature's bones give the 18 OpenPose body points and the 2 x 21 hand points.

A bone map (JSON in `rigs/bone_maps/`) says, for each keypoint, one or more alternatives, the first whose bones
exist in the armature wins:
- `{"bone": "upper_arm.L", "at": "head"}`: a bone's head, its tail (`"tail"`), or a fraction along it (0.5);
- `{"between": [spec, spec], "t": 0.5}`: a point between two such points (the neck as the shoulders' midpoint);
- `"offset": [left, up, forward]` on a bone spec: a point fixed to that bone, placed from the bone's rest
  position along the character's own axes (taken from the rest pose: shoulders give left, hips-to-neck gives
  up), in units of the bone's length; it then moves with the bone. This puts eyes, ears and nose on rigs that
  have only a head bone, whatever their bone roll or import orientation.
`"prefix"` is a regular expression allowed before every bone name (Mixamo's `mixamorig:`, `mixamorig7:`...).
Keypoints listed in `"optional"` may be missing (reported as not visible); any other missing one is an error
that names the bones it looked for.

Bone states come in as plain arrays (armature space), so nothing here needs Blender.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import SpriteDiffError, first_line
from .poses import BODY_NAMES, HAND_NAMES

HAND_KEYPOINTS = tuple(f"{side}_hand.{name}" for side in ("left", "right") for name in HAND_NAMES)
ALL_KEYPOINTS = BODY_NAMES + HAND_KEYPOINTS


def rigs_directory() -> Path:
    """`rigs/` beside the core: the repository root, or the extension package that vendors both."""
    return Path(__file__).resolve().parent.parent / "rigs"


class BoneMapError(SpriteDiffError):
    """A bone map does not fit an armature (the message names the missing bones)."""


@dataclass(frozen=True)
class BoneState:
    """One bone, in armature space: its posed 4x4 matrix (Y along the bone), rest matrix, and length."""

    matrix: np.ndarray
    rest_matrix: np.ndarray
    length: float

    def point(self, at: float | str, rest: bool = False) -> np.ndarray:
        matrix = self.rest_matrix if rest else self.matrix
        fraction = {"head": 0.0, "tail": 1.0}.get(at, at) if isinstance(at, str) else float(at)
        axis = matrix[:3, 1] / max(np.linalg.norm(matrix[:3, 1]), 1e-12)
        return matrix[:3, 3] + axis * self.length * fraction


@dataclass(frozen=True)
class BonePoint:
    bone: str
    at: float | str = "head"
    offset: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Between:
    points: tuple[BonePoint, BonePoint]
    t: float = 0.5


Spec = BonePoint | Between


@dataclass(frozen=True)
class BoneMap:
    name: str
    keypoints: Mapping[str, tuple[Spec, ...]]
    prefix: str = ""
    optional: frozenset[str] = frozenset()

    @classmethod
    def from_json(cls, data: Mapping[str, Any], name: str = "bone map") -> "BoneMap":
        """A map from its JSON form; anything malformed is a BoneMapError naming `name` and the entry."""
        def fail(what: str):
            raise BoneMapError(f"{name}: {what} (see rigs/bone_maps/ for the format)")

        def number(value, what: str) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                fail(f"{what} must be a number, got {value!r}")
            return float(value)

        def point(raw, where: str) -> BonePoint:
            if not isinstance(raw, dict) or not isinstance(raw.get("bone"), str) or not raw["bone"]:
                fail(f"{where}: expected {{\"bone\": NAME, \"at\": \"head\"|\"tail\"|0..1}}, got {raw!r}")
            at = raw.get("at", "head")
            if not (at in ("head", "tail") or (not isinstance(at, str) and 0.0 <= number(at, f"{where} at") <= 1.0)):
                fail(f"{where}: at must be \"head\", \"tail\" or a fraction from 0 to 1, got {at!r}")
            offset = raw.get("offset")
            if offset is not None:
                if not isinstance(offset, list) or len(offset) != 3:
                    fail(f"{where}: offset must be three numbers, got {offset!r}")
                offset = tuple(number(v, f"{where} offset") for v in offset)
            return BonePoint(raw["bone"], at, offset)

        def spec(raw, where: str) -> Spec:
            if isinstance(raw, dict) and "between" in raw:
                pair = raw["between"]
                if not isinstance(pair, list) or len(pair) != 2:
                    fail(f"{where}: between must be two bone points, got {pair!r}")
                t = number(raw.get("t", 0.5), f"{where} t")
                return Between((point(pair[0], where), point(pair[1], where)), t)
            return point(raw, where)

        if not isinstance(data, Mapping) or not isinstance(data.get("keypoints"), Mapping) or not data["keypoints"]:
            fail("expected an object with a \"keypoints\" object")
        keypoints = {}
        for key, raw in data["keypoints"].items():
            if key not in ALL_KEYPOINTS:
                fail(f"unknown keypoint {key!r}")
            alternatives = raw if isinstance(raw, list) else [raw]
            if not alternatives:
                fail(f"keypoint {key!r} has no bone")
            keypoints[key] = tuple(spec(item, f"keypoint {key!r}") for item in alternatives)
        prefix, optional = data.get("prefix", ""), data.get("optional", [])
        if not isinstance(prefix, str):
            fail(f"prefix must be text, got {prefix!r}")
        try:
            re.compile(prefix)
        except re.error as error:
            fail(f"prefix {prefix!r} is not a valid regular expression ({error})")
        if not isinstance(optional, list) or not all(isinstance(key, str) for key in optional):
            fail(f"optional must be a list of keypoint names, got {optional!r}")
        unknown = sorted(set(optional) - set(ALL_KEYPOINTS))
        if unknown:
            fail(f"optional names unknown keypoints {unknown}")
        return cls(name, keypoints, prefix, frozenset(optional))

    @classmethod
    def load(cls, name_or_path: str | Path) -> "BoneMap":
        """A map from `rigs/bone_maps/<name>.json` or from a path."""
        path = Path(name_or_path)
        if not path.suffix:
            path = rigs_directory() / "bone_maps" / f"{name_or_path}.json"
        if not path.is_file():
            known = ", ".join(available_bone_maps())
            raise BoneMapError(f"no bone map {str(name_or_path)!r} (known maps: {known})")
        return cls.from_json(_read_json_object(path), path.stem if path.parent == rigs_directory() / "bone_maps"
                             else str(path))

    def resolve(self, bone_names: Sequence[str]) -> "ResolvedBoneMap":
        """Bind the map to an armature's bone names, or raise BoneMapError naming the missing bones."""
        pattern = re.compile(f"^(?:{self.prefix})")
        by_plain_name: dict[str, str] = {}
        for bone in bone_names:
            plain = pattern.sub("", bone, count=1)
            by_plain_name.setdefault(plain, bone)

        def bind(point: BonePoint) -> BonePoint | None:
            actual = by_plain_name.get(point.bone)
            return None if actual is None else BonePoint(actual, point.at, point.offset)

        def bind_spec(spec: Spec) -> Spec | None:
            if isinstance(spec, BonePoint):
                return bind(spec)
            pair = [bind(p) for p in spec.points]
            return None if None in pair else Between((pair[0], pair[1]), spec.t)

        resolved: dict[str, Spec] = {}
        missing: dict[str, list[str]] = {}
        for key, alternatives in self.keypoints.items():
            for spec in alternatives:
                bound = bind_spec(spec)
                if bound is not None:
                    resolved[key] = bound
                    break
            else:
                if key not in self.optional:
                    missing[key] = sorted({p.bone for s in alternatives for p in _points_of(s)})
        absent = [key for key in BODY_NAMES if key not in self.keypoints and key not in self.optional]
        if missing or absent:
            parts = [f"{key} (looked for {' or '.join(bones)})" for key, bones in missing.items()]
            parts += [f"{key} (not in the map)" for key in absent]
            raise BoneMapError(f"bone map {self.name!r} does not fit this armature; missing: " + "; ".join(parts))
        return ResolvedBoneMap(self.name, resolved)


def _read_json_object(path: Path) -> Any:
    """JSON whose objects may not repeat a key (a keypoint given twice is a mistake, not a choice)."""
    def no_duplicates(pairs):
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise BoneMapError(f"bone map {path}: {', '.join(map(repr, repeated))} given more than once")
        return dict(pairs)

    try:
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
    except (ValueError, UnicodeDecodeError) as error:
        raise BoneMapError(f"bone map {path} is not valid JSON ({first_line(error)})") from None
    except IsADirectoryError:
        raise BoneMapError(f"bone map {path} is a folder, not a JSON file") from None


def _points_of(spec: Spec) -> tuple[BonePoint, ...]:
    return (spec,) if isinstance(spec, BonePoint) else spec.points


def available_bone_maps() -> list[str]:
    return sorted(path.stem for path in (rigs_directory() / "bone_maps").glob("*.json"))


@dataclass(frozen=True)
class ResolvedBoneMap:
    """A bone map bound to one armature's bone names."""

    name: str
    keypoints: Mapping[str, Spec]

    @property
    def bones(self) -> set[str]:
        return {point.bone for spec in self.keypoints.values() for point in _points_of(spec)}

    def has_hands(self) -> bool:
        return any(key in self.keypoints for key in HAND_KEYPOINTS)

    def keypoints_from_bones(self, bones: Mapping[str, BoneState]) -> tuple[np.ndarray, np.ndarray]:
        """(len(ALL_KEYPOINTS), 3) armature-space positions and a (len(ALL_KEYPOINTS),) found mask."""
        frame = self._character_axes(bones) if self._needs_axes() else None
        positions = np.zeros((len(ALL_KEYPOINTS), 3))
        found = np.zeros(len(ALL_KEYPOINTS), dtype=bool)
        for index, key in enumerate(ALL_KEYPOINTS):
            spec = self.keypoints.get(key)
            if spec is None:
                continue
            positions[index] = self._evaluate(spec, bones, frame)
            found[index] = True
        return positions, found

    def _needs_axes(self) -> bool:
        return any(p.offset is not None for s in self.keypoints.values() for p in _points_of(s))

    def _evaluate(self, spec: Spec, bones: Mapping[str, BoneState], axes: np.ndarray | None) -> np.ndarray:
        if isinstance(spec, Between):
            first, second = (self._evaluate(p, bones, axes) for p in spec.points)
            return first + (second - first) * spec.t
        bone = bones[spec.bone]
        if spec.offset is None:
            return bone.point(spec.at)
        # A point fixed to the bone: placed in the rest pose, then carried by the bone's rest-to-pose motion.
        rest_point = bone.point(spec.at, rest=True) + axes @ np.asarray(spec.offset, dtype=float) * bone.length
        motion = bone.matrix @ np.linalg.inv(bone.rest_matrix)
        return (motion @ np.append(rest_point, 1.0))[:3]

    def _character_axes(self, bones: Mapping[str, BoneState]) -> np.ndarray:
        """Columns: the character's left, up and forward, from its rest pose (armature space)."""

        def rest(key: str) -> np.ndarray:
            spec = self.keypoints[key]
            if isinstance(spec, Between):
                a, b = (bones[p.bone].point(p.at, rest=True) for p in spec.points)
                return a + (b - a) * spec.t
            if spec.offset is not None:
                raise BoneMapError(f"{self.name}: {key} cannot be given by an offset")
            return bones[spec.bone].point(spec.at, rest=True)

        left = rest("left_shoulder") - rest("right_shoulder")
        hips = (rest("left_hip") + rest("right_hip")) / 2
        up = rest("neck") - hips
        left /= np.linalg.norm(left)
        up = up - left * (up @ left)
        up /= np.linalg.norm(up)
        forward = np.cross(left, up)
        return np.stack([left, up, forward], axis=1)
