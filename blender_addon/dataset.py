"""`python -m blender_addon dataset`: training data for the sprite model, rendered headless in Blender.

Procedural characters (`--characters N`) are the bundled rig with varied proportions and simple meshes
(body, hair, hats, capes, robes, armour, held items) parented rigidly to its bones, in flat colours; a user's
own character (`--blend FILE --armature NAME`) is rendered with its own meshes, materials and engine. Every
clip is one motion seen from one view; its camera is set so that the render shows exactly the framing the
product uses at inference (`framing.auto_framing`, margin 0.08, ground line 0.92), and the keypoints are
read through that camera, so poses and pictures agree by construction (checked to 0.5 px).

Layout (what the training code reads):

    DIR/
      dataset.json      {"format": "spritediff-dataset", "version": 1, "size": [W, H], "seed": S,
                         "source": "procedural" | "blend", "characters": ["char_0000", ...]}  (complete ones)
      char_0000/
        character.json  {"name", "seed", "recipe": {...}, "references": {"front": "reference/front.png",
                         "three_quarter": ..., "side": ...}, "clips": ["000_walk_side", ...]}
        reference/front.png, three_quarter.png, side.png   RGBA renders at the rest pose
        reference/poses.json (+ pose_0000.png ...)          their poses, frames in that order
        clips/<clip>/clip.json   {"motion", "preset", "variation", "view": {"name", "azimuth_deg",
                                  "projection", "elevation_deg"}, "fps", "loop", "frames"}
        clips/<clip>/poses.json, pose_0000.png ...          the clip's poses (core drawing)
        clips/<clip>/frame_0000.png ...                     RGBA renders, one per pose

Views: "side" is the presets' side camera (from the character's right, it faces screen right); "dir_DDD"
is a ring camera at azimuth DDD degrees, 0 = in front of the character, turning towards its right (90 =
the side view's direction, 180 = behind it). A character folder is rendered into a hidden temporary
folder and renamed into place when complete, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import bmesh
import bpy
import numpy as np
from mathutils import Matrix, Vector

from spritediff_core import dataset_images, drawing, framing, poses
from spritediff_core.dataset import DATASET_FORMAT as FORMAT  # the core reads what this writes
from spritediff_core.dataset import REFERENCE_AZIMUTHS
from spritediff_core.errors import SpriteDiffError
from spritediff_core.output_layout import frame_names

from . import armature_reader as reader
from . import rig_builder
from .actions import action_fcurves, assign_action

VERSION = 1
MANIFEST = "dataset.json"
CHARACTER_FILE = "character.json"
MARGIN, GROUND = 0.08, 0.92  # the product's auto-framing (armature_reader.frame_action_poses)
SIDE_AZIMUTH = 90.0
MAX_FRAMING_ERROR_PX = 0.5


@dataclass
class DatasetOptions:
    out: str
    characters: int = 0
    size: int = 128
    directions: int = 8
    clips: int = 8
    seed: int = 0
    first: int = 0
    blend: str | None = None
    armature: str | None = None
    actions: Sequence[str] = ()


@dataclass(frozen=True)
class View:
    name: str
    azimuth_deg: float
    projection: str = "ORTHO"
    elevation_deg: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "azimuth_deg": self.azimuth_deg, "projection": self.projection,
                "elevation_deg": self.elevation_deg}


@dataclass
class ClipPlan:
    motion: str
    preset: str | None
    variation: dict[str, Any]
    view: View
    motion_data: dict[str, Any] = field(repr=False, default_factory=dict)  # preset-format keyframes

    def name(self, index: int) -> str:
        return f"{index:03d}_{self.motion}_{self.view.name}"


# ---------------------------------------------------------------------------------------------- output folder

def check_output(out: Path, source: str, size: int, seed: int) -> None:
    """Refuse an output that is a file, or a non-empty folder that is not a compatible dataset."""
    if out.exists() and not out.is_dir():
        raise SpriteDiffError(f"--out {out} is a file, not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    manifest = out / MANIFEST
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SpriteDiffError(f"--out {out} is a non-empty folder that is not a spritediff dataset: "
                              "choose an empty or new folder")
    expected = {"size": [size, size], "source": source, "seed": seed}
    found = {key: data.get(key) for key in expected}
    if found != expected:
        raise SpriteDiffError(f"--out {out} is a dataset made with other settings ({found}); this run asks for "
                              f"{expected}: use another folder")


def complete_characters(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / CHARACTER_FILE).is_file()) if out.is_dir() else []


def write_manifest(out: Path, source: str, size: int, seed: int) -> None:
    """dataset.json listing the character folders that are complete (read from disk, so runs over disjoint
    --first ranges into one folder agree)."""
    data = {"format": FORMAT, "version": VERSION, "size": [size, size], "seed": seed, "source": source,
            "characters": complete_characters(out)}
    temporary = out / f".{MANIFEST}.{os.getpid()}"
    temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, out / MANIFEST)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- recipes

SKIN_TONES = ("#ffdbac", "#f1c27d", "#e0ac69", "#c68642", "#8d5524", "#5c3a21", "#ffe0bd", "#9fd67a",
              "#8fb3e0", "#c9a0dc", "#a0a0a0")
OUTLINE_COLOURS = ("#000000", "#1a1020", "#201810", "#101828", "#2a0a0a")
BUILDS = {  # head, legs, torso, arms, shoulders, hips, limbs (thickness), body (thickness)
    "chibi": (1.9, 0.55, 0.75, 0.7, 0.95, 1.0, 1.3, 1.25),
    "cartoon": (1.45, 0.8, 0.9, 0.85, 1.0, 1.0, 1.15, 1.1),
    "heroic": (1.0, 1.05, 1.05, 1.05, 1.25, 0.95, 1.1, 1.15),
    "tall": (0.9, 1.2, 1.1, 1.1, 0.9, 0.9, 0.8, 0.8),
    "stocky": (1.15, 0.75, 0.95, 0.95, 1.3, 1.25, 1.4, 1.5),
}
HAIR = ("none", "cap", "spiky", "long")
HEADGEAR = ("none", "none", "none", "wizard_hat", "top_hat", "helmet", "hood", "band")
LOWER = ("trousers", "trousers", "skirt", "robe")
ITEMS = ("none", "none", "sword", "staff", "shield", "axe", "sword_and_shield")


def _colour(rng: random.Random, saturation=(0.45, 0.95), value=(0.35, 0.95), hue: float | None = None) -> str:
    h = rng.random() if hue is None else hue % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(*saturation), rng.uniform(*value))
    return "#{:02x}{:02x}{:02x}".format(round(r * 255), round(g * 255), round(b * 255))


def character_rng(seed: int, index: int) -> random.Random:
    """Character `index`'s random stream: from (seed, index) only, so any subset renders identically."""
    return random.Random(f"spritediff-dataset/{seed}/{index}")


def character_recipe(rng: random.Random) -> dict[str, Any]:
    build = rng.choice(sorted(BUILDS))
    values = [v * rng.uniform(0.9, 1.1) for v in BUILDS[build]]
    head, legs, torso, arms, shoulders, hips, limbs, body = values
    base_hue = rng.random()
    # A few related hues (scheme) plus free ones: readable outfits, still varied.
    palette = {
        "skin": rng.choice(SKIN_TONES),
        "hair": _colour(rng, (0.3, 0.9), (0.15, 0.95)),
        "top": _colour(rng, hue=base_hue),
        "bottom": _colour(rng, hue=base_hue + rng.choice((0.5, 0.33, 0.08, -0.08)), value=(0.25, 0.8)),
        "shoes": _colour(rng, (0.2, 0.7), (0.15, 0.5)),
        "accent": _colour(rng, hue=base_hue + rng.uniform(0.25, 0.75)),
        "cloak": _colour(rng, hue=base_hue + rng.uniform(-0.15, 0.15), value=(0.3, 0.85)),
        "metal": rng.choice(("#c0c8d0", "#a8a8b0", "#d4af37", "#b87333", "#707880")),
        "wood": rng.choice(("#8b5a2b", "#a0522d", "#6b4423")),
        "eyes": rng.choice(("#101010", "#202060", "#303030", "#004020")),
    }
    headgear = rng.choice(HEADGEAR)
    hair = "none" if headgear in ("helmet",) else rng.choice(HAIR)
    lower = rng.choice(LOWER)
    return {
        "build": build,
        "proportions": {"head": round(head, 3), "legs": round(legs, 3), "torso": round(torso, 3),
                        "arms": round(arms, 3), "shoulders": round(shoulders, 3), "hips": round(hips, 3),
                        "height": round(rng.uniform(0.9, 1.1), 3)},
        "thickness": {"limbs": round(limbs, 3), "body": round(body, 3)},
        "palette": palette,
        "hair": hair,
        "headgear": headgear,
        "cape": rng.random() < 0.25,
        "lower": lower,
        "armour": rng.choice(("none", "none", "shoulder_pads", "chest_plate", "full")),
        "item": rng.choice(ITEMS),
        "belt": rng.random() < 0.5,
        "pattern": rng.choice(("none", "none", "stripes", "checks")),
        "sleeves": rng.choice(("long", "short", "none")),
        "outline": rng.choice(OUTLINE_COLOURS) if rng.random() < 0.7 else None,
        "inner_lines": rng.random() < 0.5,
    }


# ---------------------------------------------------------------------------------------------- proportions

BONE_GROUPS = (  # bone name prefix -> proportion group
    ("root", "root"), ("hips", "hips"), ("spine", "torso"), ("chest", "torso"), ("neck", "neck"),
    ("head", "head"), ("nose", "head"), ("eye", "head"), ("ear", "head"), ("shoulder", "shoulders"),
    ("upper_arm", "arms"), ("forearm", "arms"), ("hand", "hands"), ("thumb", "hands"), ("index", "hands"),
    ("middle", "hands"), ("ring", "hands"), ("little", "hands"), ("thigh", "legs"), ("shin", "legs"),
    ("foot", "feet"),
)


def proportioned_rig(recipe: dict[str, Any]) -> dict[str, Any]:
    """The bundled rig with bones rescaled per body region; names and hierarchy unchanged (the bone map
    still resolves). A bone's head moves with its parent's scaling, its own vector with its group's."""
    rig_data = rig_builder.load_rig_data()
    p = recipe["proportions"]
    scales = {
        "root": (1.0, 1.0, p["legs"]), "hips": (p["hips"], 1.0, p["torso"]),
        "torso": (p["shoulders"], 1.0, p["torso"]), "neck": (1.0, 1.0, min(p["torso"], 1.0)),
        "head": (p["head"],) * 3, "shoulders": (p["shoulders"], 1.0, 1.0), "arms": (p["arms"],) * 3,
        "hands": (0.6 * p["arms"] + 0.4 * p["head"],) * 3, "legs": (p["legs"],) * 3,
        "feet": (0.5 + 0.5 * p["legs"],) * 3,
    }

    def group(name: str) -> np.ndarray:
        for prefix, key in BONE_GROUPS:
            if name.startswith(prefix):
                return np.array(scales[key])
        raise KeyError(name)

    original = {b["name"]: b for b in rig_data["bones"]}
    new_heads: dict[str, np.ndarray] = {}
    bones = []
    for spec in rig_data["bones"]:  # parents come before children in the rig file
        head, tail = np.array(spec["head"], float), np.array(spec["tail"], float)
        parent = spec.get("parent")
        if parent:
            new_head = new_heads[parent] + group(parent) * (head - np.array(original[parent]["head"], float))
        else:
            new_head = head
        new_heads[spec["name"]] = new_head
        new_tail = new_head + group(spec["name"]) * (tail - head)
        height = p["height"]
        bones.append({**spec, "head": [float(v) * height for v in new_head],
                      "tail": [float(v) * height for v in new_tail]})
    return {**rig_data, "bones": bones}


# ---------------------------------------------------------------------------------------------- motions

# Rotation limits (degrees, the rig's bone-local Euler XYZ) for random poses. Signs as in the presets:
# thigh -X swings the leg forward, shin +X bends the knee, upper arm -X raises the arm forward, forearm -X
# bends the elbow, spine +X leans forward; Z on upper arms opens them sideways (+ on .L, - on .R).
JOINT_LIMITS = {
    "spine": {0: (-15, 30), 1: (-20, 20), 2: (-10, 10)},
    "chest": {0: (-10, 20), 1: (-30, 30)},
    "neck": {0: (-15, 15)},
    "head": {0: (-25, 25), 2: (-35, 35)},
    "upper_arm": {0: (-165, 60), 2: (-5, 80)},
    "forearm": {0: (-130, 0)},
    "thigh": {0: (-90, 35), 2: (-8, 8)},
    "shin": {0: (0, 120)},
    "foot": {0: (-30, 30)},
}
ARM_BONES = ("shoulder", "upper_arm", "forearm", "hand")
LEG_BONES = ("thigh", "shin", "foot")


def _retimed(data: dict[str, Any], frames: int) -> dict[str, Any]:
    """The preset with its keys spread over a range whose N evenly sampled frames are whole frames
    (a cycle spans N frames, a one-shot N - 1), so each pose is a frame Blender can render."""
    start, end = data["frame_start"], data["frame_end"]
    span = frames if data["loop"] else max(frames - 1, 1)
    factor = span / max(end - start, 1e-9)
    keys = [{**key, "frame": start + (key["frame"] - start) * factor} for key in data["keyframes"]]
    return {**data, "frames": frames, "frame_start": start, "frame_end": start + span, "keyframes": keys}


def varied_preset(data: dict[str, Any], variation: dict[str, Any]) -> dict[str, Any]:
    """A preset with its timing, amplitude, arm and leg swing scaled and constant offsets added."""
    keys = []
    for key in data["keyframes"]:
        bones = {}
        for bone, channels in key["bones"].items():
            factor = variation["amplitude"]
            if bone.startswith(ARM_BONES):
                factor *= variation["arm_swing"]
            elif bone.startswith(LEG_BONES):
                factor *= variation["leg_swing"]
            rotation = [v * factor for v in channels.get("rotation", (0, 0, 0))]
            for axis, offset in enumerate(variation["offsets"].get(bone, (0, 0, 0))):
                rotation[axis] += offset
            bones[bone] = {**channels, "rotation": rotation}
        for bone, offset in variation["offsets"].items():
            bones.setdefault(bone, {"rotation": list(offset)})
        keys.append({**key, "bones": bones})
    varied = {**data, "keyframes": keys, "fps": variation["fps"]}
    return _retimed(varied, variation["frames"])


def preset_variation(rng: random.Random, data: dict[str, Any]) -> dict[str, Any]:
    frames = max(3, round(data["frames"] * rng.choice((0.75, 1.0, 1.0, 1.25, 1.5))))
    offsets = {}
    for bone, axis, spread in (("spine", 0, 10), ("head", 0, 12), ("head", 2, 15), ("upper_arm.L", 2, 15),
                               ("upper_arm.R", 2, -15), ("chest", 1, 10)):
        if rng.random() < 0.4:
            value = round(rng.uniform(-abs(spread), abs(spread)) if axis != 2 or "arm" not in bone
                          else rng.uniform(0, spread), 2)
            offsets.setdefault(bone, [0.0, 0.0, 0.0])[axis] = value
    return {"frames": frames, "fps": round(data["fps"] * frames / data["frames"] * rng.uniform(0.8, 1.25), 3),
            "amplitude": round(rng.uniform(0.7, 1.3), 3), "arm_swing": round(rng.uniform(0.6, 1.5), 3),
            "leg_swing": round(rng.uniform(0.7, 1.3), 3), "offsets": offsets}


def random_pose(rng: random.Random) -> dict[str, dict[str, list[float]]]:
    bones = {}
    for prefix, limits in JOINT_LIMITS.items():
        names = [prefix] if prefix in ("spine", "chest", "neck", "head") else [f"{prefix}.L", f"{prefix}.R"]
        for name in names:
            rotation = [0.0, 0.0, 0.0]
            for axis, (low, high) in limits.items():
                value = (rng.uniform(low, high) + rng.uniform(low, high)) / 2  # favour the middle of the range
                if axis == 2 and name.endswith(".R") and prefix == "upper_arm":
                    value = -value
                rotation[axis] = round(value, 2)
            bones[name] = {"rotation": rotation}
    return bones


def random_motion(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """A few random poses within the joint limits, interpolated: a cycle or a one-shot."""
    loop = rng.random() < 0.6
    poses_count = rng.randint(2, 4)
    frames = rng.choice((4, 6, 8))
    keys = [random_pose(rng) for _ in range(poses_count)]
    if loop:
        keys.append(keys[0])
    span = frames if loop else frames - 1
    keyframes = [{"frame": 1 + span * i / (len(keys) - 1), "bones": bones} for i, bones in enumerate(keys)]
    data = {"name": "random", "frames": frames, "fps": rng.choice((6, 8, 10, 12)), "loop": loop,
            "frame_start": 1, "frame_end": 1 + span, "keyframes": keyframes}
    return data, {"poses": poses_count, "frames": frames, "fps": data["fps"], "loop": loop}


def pick_view(rng: random.Random, directions: int) -> View:
    roll = rng.random()
    if roll < 0.4:
        return View("side", SIDE_AZIMUTH)
    azimuth = float(rng.randrange(directions) * 360.0 / directions)
    elevation = 0.0 if rng.random() < 0.6 else round(rng.uniform(10, 35), 1)
    if roll < 0.5:
        return View(direction_name(azimuth), azimuth, "PERSP", round(rng.uniform(5, 30), 1))
    return View(direction_name(azimuth), azimuth, "ORTHO", elevation)


def direction_name(azimuth: float) -> str:
    return f"dir_{round(azimuth) % 360:03d}"


def clip_plans(rng: random.Random, count: int, directions: int) -> list[ClipPlan]:
    plans = []
    for _ in range(count):
        kind = rng.random()
        view = pick_view(rng, directions)
        if kind < 0.3:
            data, variation = random_motion(rng)
            plans.append(ClipPlan("random", None, variation, view, data))
            continue
        preset = rng.choice(rig_builder.PRESETS)
        data = rig_builder.load_preset(preset)
        if kind < 0.5:
            plans.append(ClipPlan(preset, preset, {}, view, data))
        else:
            variation = preset_variation(rng, data)
            plans.append(ClipPlan(preset, preset, variation, view, varied_preset(data, variation)))
    return plans


# ---------------------------------------------------------------------------------------------- meshes

def _linear(hex_colour: str) -> tuple[float, float, float, float]:
    """sRGB hex -> the linear colour Blender stores (the Standard view transform maps it back exactly)."""
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return (*linear, 1.0)


def _frame_along(axis: Vector) -> tuple[Vector, Vector]:
    """Two unit vectors across `axis`: the first as close to the character's left (+X) as possible."""
    axis = axis.normalized()
    reference = Vector((1, 0, 0)) if abs(axis.x) < 0.9 else Vector((0, -1, 0))
    u = (reference - reference.dot(axis) * axis).normalized()
    return u, axis.cross(u)


class PartBuilder:
    """Meshes per bone: each bone's parts go into one object (one material slot per colour) that follows
    the bone rigidly; all geometry is built in the armature's rest space."""

    def __init__(self, armature: bpy.types.Object, palette: dict[str, str]) -> None:
        self.armature, self.palette = armature, palette
        self.meshes: dict[str, tuple[bmesh.types.BMesh, list[str]]] = {}
        self.materials: dict[str, bpy.types.Material] = {}

    def head(self, bone: str) -> Vector:
        return self.armature.data.bones[bone].head_local.copy()

    def tail(self, bone: str) -> Vector:
        return self.armature.data.bones[bone].tail_local.copy()

    def _target(self, bone: str, colour: str) -> tuple[bmesh.types.BMesh, int]:
        bm, colours = self.meshes.setdefault(bone, (bmesh.new(), []))
        if colour not in colours:
            colours.append(colour)
        return bm, colours.index(colour)

    def _assign(self, bm, first_face: int, slot: int, pattern: tuple[int, str, str] | None = None) -> None:
        bm.faces.ensure_lookup_table()
        for face in bm.faces[first_face:]:
            face.material_index = slot

    def tube(self, bone: str, start: Vector, end: Vector, r0: float, r1: float, colour: str,
             segments: int = 10, depth: float = 1.0, rings: int = 1, stripes: str | None = None,
             checks: bool = False, caps: bool = True) -> None:
        """A tapered tube (elliptic: `depth` x radius front to back); `stripes` colours every other ring,
        `checks` every other ring-segment cell."""
        bm, slot = self._target(bone, colour)
        second = self._target(bone, stripes)[1] if stripes else slot
        axis = end - start
        u, v = _frame_along(axis)
        first = len(bm.faces)
        ring_verts = []
        for i in range(rings + 1):
            t = i / rings
            centre, radius = start + axis * t, r0 + (r1 - r0) * t
            ring_verts.append([bm.verts.new(centre + u * (radius * math.cos(a)) + v * (radius * depth * math.sin(a)))
                               for a in (2 * math.pi * j / segments for j in range(segments))])
        for i in range(rings):
            for j in range(segments):
                a, b = ring_verts[i], ring_verts[i + 1]
                face = bm.faces.new((a[j], a[(j + 1) % segments], b[(j + 1) % segments], b[j]))
                odd = (i + (j * 2 // max(segments // 4, 1) if checks else 0)) % 2
                face.material_index = second if (stripes and odd) else slot
        if caps:
            bm.faces.new(list(reversed(ring_verts[0]))).material_index = slot
            bm.faces.new(ring_verts[-1]).material_index = slot
        del first

    def ellipsoid(self, bone: str, centre: Vector, radii: tuple[float, float, float], colour: str,
                  segments: int = 12, cut_below: float | None = None, cut_front_below: float | None = None,
                  rotation: Matrix | None = None) -> None:
        """A UV sphere scaled to `radii`; optional cuts (relative to the centre, in units of the z radius)
        remove the bottom, or the front below a height: caps, hoods and helmets are cut spheres."""
        bm, slot = self._target(bone, colour)
        first = len(bm.faces)
        matrix = Matrix.Translation(centre) @ (rotation or Matrix.Identity(4)) @ Matrix.Diagonal((*radii, 1.0))
        made = bmesh.ops.create_uvsphere(bm, u_segments=segments, v_segments=max(segments * 2 // 3, 6), radius=1.0,
                                         matrix=matrix)
        if cut_below is not None or cut_front_below is not None:
            doomed = []
            for vert in made["verts"]:
                z = (vert.co.z - centre.z) / radii[2]
                front = (vert.co.y - centre.y) / radii[1] < -0.2
                if (cut_below is not None and z < cut_below) or (cut_front_below is not None and front
                                                                  and z < cut_front_below):
                    doomed.append(vert)
            bmesh.ops.delete(bm, geom=doomed, context="VERTS")
        self._assign(bm, first, slot)

    def box(self, bone: str, centre: Vector, size: tuple[float, float, float], colour: str,
            rotation: Matrix | None = None) -> None:
        bm, slot = self._target(bone, colour)
        first = len(bm.faces)
        matrix = Matrix.Translation(centre) @ (rotation or Matrix.Identity(4)) @ Matrix.Diagonal((*size, 1.0))
        bmesh.ops.create_cube(bm, size=1.0, matrix=matrix)
        self._assign(bm, first, slot)

    def cone(self, bone: str, base: Vector, tip: Vector, radius: float, colour: str, segments: int = 10) -> None:
        self.tube(bone, base, tip, radius, radius * 0.02, colour, segments=segments)

    def material(self, colour: str) -> bpy.types.Material:
        if colour not in self.materials:
            material = bpy.data.materials.new(f"sd_{colour[1:]}")
            material.diffuse_color = _linear(colour)
            self.materials[colour] = material
        return self.materials[colour]

    def finish(self, scene: bpy.types.Scene) -> list[bpy.types.Object]:
        objects = []
        for bone_name, (bm, colours) in self.meshes.items():
            mesh = bpy.data.meshes.new(f"sd_{bone_name}")
            bm.normal_update()
            bm.to_mesh(mesh)
            bm.free()
            for colour in colours:
                mesh.materials.append(self.material(colour))
            obj = bpy.data.objects.new(f"sd_{bone_name}", mesh)
            scene.collection.objects.link(obj)
            bone = self.armature.data.bones[bone_name]
            obj.parent = self.armature
            obj.parent_type = "BONE"
            obj.parent_bone = bone_name
            # A bone child sits at the bone's tail; undo that so the rest-space vertices stay where built.
            tail_matrix = self.armature.matrix_world @ bone.matrix_local @ Matrix.Translation((0, bone.length, 0))
            obj.matrix_parent_inverse = tail_matrix.inverted()
            objects.append(obj)
        return objects


def build_body(scene: bpy.types.Scene, armature: bpy.types.Object, recipe: dict[str, Any],
               rng: random.Random) -> None:
    """Head, torso, limbs and the recipe's clothes and items as meshes on the armature's bones."""
    c = recipe["palette"]
    parts = PartBuilder(armature, c)
    h, t = parts.head, parts.tail
    p = recipe["proportions"]
    scale = p["height"]
    limb = 0.045 * recipe["thickness"]["limbs"] * scale
    body = recipe["thickness"]["body"] * scale
    stripes = c["accent"] if recipe["pattern"] != "none" else None
    checks = recipe["pattern"] == "checks"

    # Head: a sphere round the eyes and ears, with eyes on its front.
    head_radius = 0.115 * p["head"] * scale
    head_centre = h("head") + Vector((0, 0, 0.085 * p["head"] * scale))
    parts.ellipsoid("head", head_centre, (head_radius, head_radius * 0.95, head_radius * 1.05), c["skin"])
    for side in ("L", "R"):
        eye = t(f"eye.{side}")
        parts.ellipsoid("head", eye + Vector((0, head_radius * 0.02, 0)),
                        (head_radius * 0.13, head_radius * 0.08, head_radius * 0.2), c["eyes"], segments=8)
    parts.tube("neck", h("neck"), t("neck") + Vector((0, 0, 0.02 * scale)), limb * 0.9, limb * 0.9, c["skin"], 8)

    # Torso: pelvis, belly and chest as elliptic tubes; shoulders wider than the waist.
    shoulder_half = abs(t("shoulder.L").x) * 0.95
    waist = 0.12 * p["hips"] * body
    chest_width = max(shoulder_half * 0.85, waist) * (0.9 + 0.2 * body / scale)
    top = c["top"]
    parts.tube("hips", h("hips") - Vector((0, 0, 0.05 * scale)), t("hips"), waist, waist * 0.95, c["bottom"],
               depth=0.7)
    parts.tube("spine", h("spine"), t("spine"), waist * 0.95, chest_width * 0.9, top, depth=0.65, rings=2,
               stripes=stripes, checks=checks)
    parts.tube("chest", h("chest"), t("chest") + Vector((0, 0, 0.01 * scale)), chest_width * 0.9, chest_width * 0.75,
               top, depth=0.6, rings=2, stripes=stripes, checks=checks)
    if recipe["belt"]:
        parts.tube("hips", t("hips") - Vector((0, 0, 0.03 * scale)), t("hips") + Vector((0, 0, 0.02 * scale)),
                   waist * 1.06, waist * 1.04, c["accent"], depth=0.72)

    sleeve_colour = {"long": (top, top), "short": (top, c["skin"]), "none": (c["skin"], c["skin"])}
    upper_colour, fore_colour = sleeve_colour[recipe["sleeves"]]
    for side in ("L", "R"):
        parts.ellipsoid(f"shoulder.{side}", t(f"shoulder.{side}"), (limb * 1.25,) * 3, upper_colour, 8)
        parts.tube(f"upper_arm.{side}", h(f"upper_arm.{side}"), t(f"upper_arm.{side}"), limb * 1.15, limb,
                   upper_colour, 8)
        parts.ellipsoid(f"forearm.{side}", h(f"forearm.{side}"), (limb,) * 3, fore_colour, 8)
        parts.tube(f"forearm.{side}", h(f"forearm.{side}"), t(f"forearm.{side}"), limb, limb * 0.85, fore_colour, 8)
        hand_length = (t(f"hand.{side}") - h(f"hand.{side}")).length
        parts.ellipsoid(f"hand.{side}", h(f"hand.{side}") + (t(f"hand.{side}") - h(f"hand.{side}")) * 0.35,
                        (limb * 1.1, limb * 1.1, max(hand_length * 0.55, limb * 1.1)), c["skin"], 8)
        leg = limb * 1.45 * (0.8 + 0.2 * p["hips"])
        trousers = c["bottom"] if recipe["lower"] != "robe" else c["cloak"]
        parts.tube(f"thigh.{side}", h(f"thigh.{side}"), t(f"thigh.{side}"), leg, leg * 0.85, trousers, 8)
        parts.ellipsoid(f"shin.{side}", h(f"shin.{side}"), (leg * 0.85,) * 3, trousers, 8)
        boot_top = h(f"shin.{side}") + (t(f"shin.{side}") - h(f"shin.{side}")) * 0.6
        parts.tube(f"shin.{side}", h(f"shin.{side}"), boot_top, leg * 0.85, leg * 0.75, trousers, 8)
        parts.tube(f"shin.{side}", boot_top, t(f"shin.{side}"), leg * 0.8, leg * 0.75, c["shoes"], 8)
        ankle, toe = h(f"foot.{side}"), t(f"foot.{side}")
        foot_length = max((toe - ankle).length * 1.25, leg * 2)
        parts.box(f"foot.{side}", Vector((ankle.x, ankle.y - foot_length * 0.3, ankle.z * 0.55)),
                  (leg * 1.6, foot_length, max(ankle.z * 1.1, leg)), c["shoes"])

    # Clothes below the waist: a skirt to the knees or a robe to the ankles, flaring out.
    if recipe["lower"] in ("skirt", "robe"):
        bottom = h("shin.L").z * 0.9 if recipe["lower"] == "skirt" else h("foot.L").z + 0.02 * scale
        flare = 1.5 if recipe["lower"] == "skirt" else 1.7
        colour = c["bottom"] if recipe["lower"] == "skirt" else c["cloak"]
        parts.tube("hips", t("hips"), Vector((0, 0, bottom)), waist * 1.05, waist * flare + leg, colour,
                   segments=12, depth=0.8, rings=2, stripes=c["accent"] if rng.random() < 0.3 else None)

    # Hair and headgear: cut spheres over the head, cones for spikes and hats.
    r = head_radius
    if recipe["hair"] in ("cap", "spiky", "long"):
        parts.ellipsoid("head", head_centre + Vector((0, r * 0.05, r * 0.05)), (r * 1.08, r * 1.08, r * 1.08),
                        c["hair"], cut_below=-0.35, cut_front_below=0.35)
    if recipe["hair"] == "spiky":
        for k in range(7):
            angle = 2 * math.pi * k / 7
            direction = Vector((math.cos(angle) * 0.6, math.sin(angle) * 0.6 + 0.2, 0.8)).normalized()
            base = head_centre + direction * r * 0.7
            parts.cone("head", base, base + direction * r * rng.uniform(0.6, 0.9), r * 0.3, c["hair"], 6)
    if recipe["hair"] == "long":
        parts.box("head", head_centre + Vector((0, r * 0.55, -r * 1.0)), (r * 1.9, r * 0.6, r * 2.2), c["hair"])
    gear = recipe["headgear"]
    if gear == "wizard_hat":
        brim = head_centre + Vector((0, 0, r * 0.55))
        parts.tube("head", brim, brim + Vector((0, 0, r * 0.08)), r * 1.6, r * 1.6, c["cloak"], 14)
        parts.cone("head", brim, brim + Vector((0, r * 0.3, r * 2.0)), r * 0.95, c["cloak"], 12)
    elif gear == "top_hat":
        brim = head_centre + Vector((0, 0, r * 0.6))
        parts.tube("head", brim, brim + Vector((0, 0, r * 0.08)), r * 1.35, r * 1.35, c["shoes"], 14)
        parts.tube("head", brim, brim + Vector((0, 0, r * 1.1)), r * 0.8, r * 0.85, c["shoes"], 14,
                   rings=3, stripes=c["accent"])
    elif gear == "helmet":
        parts.ellipsoid("head", head_centre, (r * 1.15, r * 1.15, r * 1.15), c["metal"], 14,
                        cut_below=-0.5, cut_front_below=-0.1)
        parts.box("head", head_centre + Vector((0, 0, r * 1.15)), (r * 0.2, r * 1.6, r * 0.5), c["accent"])
    elif gear == "hood":
        parts.ellipsoid("head", head_centre + Vector((0, r * 0.1, r * 0.05)), (r * 1.2, r * 1.2, r * 1.2),
                        c["cloak"], 14, cut_below=-0.9, cut_front_below=0.45)
    elif gear == "band":
        parts.tube("head", head_centre + Vector((0, 0, r * 0.3)), head_centre + Vector((0, 0, r * 0.5)),
                   r * 1.04, r * 1.0, c["accent"], 14)

    # Cape: a thin flared slab behind the back, hanging from the shoulders.
    if recipe["cape"]:
        top_z = t("chest").z - 0.01 * scale
        bottom_z = h("shin.L").z * rng.uniform(0.3, 1.0)
        back = chest_width * 0.65
        cape_top, cape_bottom = Vector((0, back, top_z)), Vector((0, back * 1.6 + 0.05 * scale, bottom_z))
        parts.tube("chest", cape_top, cape_bottom, chest_width * 1.0, chest_width * 1.5, c["cloak"],
                   segments=4, depth=0.08, caps=True)

    # Armour.
    if recipe["armour"] in ("shoulder_pads", "full"):
        for side in ("L", "R"):
            parts.ellipsoid(f"upper_arm.{side}", h(f"upper_arm.{side}") + Vector((0, 0, limb * 0.3)),
                            (limb * 2.0, limb * 1.9, limb * 1.5), c["metal"], 10, cut_below=-0.3)
    if recipe["armour"] in ("chest_plate", "full"):
        parts.tube("chest", h("chest") - Vector((0, 0, 0.02 * scale)), t("chest") - Vector((0, 0, 0.03 * scale)),
                   chest_width * 0.97, chest_width * 0.82, c["metal"], depth=0.66)

    # Held items, in rest space: the right fist holds them pointing forward and up (-Y, +Z), as sprites
    # carry weapons; the hand bone's rotation then swings them with the arm.
    item = recipe["item"]
    grip_r = h("hand.R") + (t("hand.R") - h("hand.R")) * 0.5
    grip_l = h("hand.L") + (t("hand.L") - h("hand.L")) * 0.5
    reach = 0.9 * scale * (0.6 + 0.4 * p["arms"])
    forward = Vector((0, -0.6, 0.8))
    tilt = Matrix.Rotation(math.atan2(0.6, 0.8), 4, "X")  # turns +Z into `forward`
    if item in ("sword", "sword_and_shield"):
        guard = grip_r + forward * limb * 1.6
        parts.tube("hand.R", grip_r - forward * limb * 2, guard, limb * 0.35, limb * 0.35, c["wood"], 6)
        parts.box("hand.R", guard, (limb * 2.6, limb * 0.5, limb * 0.6), c["accent"], rotation=tilt)
        parts.box("hand.R", guard + forward * reach * 0.5, (limb * 0.8, limb * 0.25, reach), c["metal"],
                  rotation=tilt)
    elif item == "axe":
        end = grip_r + forward * reach * 0.75
        parts.tube("hand.R", grip_r - forward * limb * 2, end, limb * 0.35, limb * 0.35, c["wood"], 6)
        parts.box("hand.R", end - forward * limb * 1.5 + Vector((0, -limb * 1.2, -limb)),
                  (limb * 0.3, limb * 2.5, limb * 3.5), c["metal"], rotation=tilt)
    elif item == "staff":
        parts.tube("hand.R", grip_r - Vector((0, 0, reach * 0.6)), grip_r + Vector((0, 0, reach * 0.9)),
                   limb * 0.4, limb * 0.4, c["wood"], 6)
        parts.ellipsoid("hand.R", grip_r + Vector((0, 0, reach * 0.9 + limb)), (limb * 1.2,) * 3, c["accent"], 10)
    if item in ("shield", "sword_and_shield"):
        side = grip_l + Vector((limb * 1.6, 0, reach * 0.12))
        parts.tube("forearm.L", side, side + Vector((limb * 0.5, 0, 0)), reach * 0.28, reach * 0.28, c["metal"], 12)
        parts.tube("forearm.L", side + Vector((limb * 0.5, 0, 0)), side + Vector((limb * 0.8, 0, 0)), reach * 0.12,
                   reach * 0.05, c["accent"], 12)
    parts.finish(scene)


# ---------------------------------------------------------------------------------------------- cameras

def setup_render(scene: bpy.types.Scene, size: int, flat_workbench: bool, inner_lines: str | None = None) -> None:
    """Square RGBA render on a transparent film; the procedural characters use Workbench's flat material
    colours (fastest engine, anti-aliased edges, exact palette colours). `inner_lines`: a colour for
    Workbench's object outlines, which draw where one body part overlaps another (an arm over the chest)."""
    render = scene.render
    render.resolution_x = render.resolution_y = size
    render.resolution_percentage = 100
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    render.film_transparent = True
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGBA"
    render.use_file_extension = True
    if flat_workbench:
        render.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        shading.light = "FLAT"
        shading.color_type = "MATERIAL"
        shading.show_object_outline = inner_lines is not None
        if inner_lines is not None:
            shading.object_outline_color = _linear(inner_lines)[:3]
        shading.show_cavity = shading.show_shadows = shading.show_specular_highlight = False
        scene.display.render_aa = "8"
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"


@dataclass
class Subject:
    """Where the character stands: the armature's world origin, its facing (yaw) and its height."""

    origin: Vector
    yaw: float
    height: float


def subject_of(armature: bpy.types.Object) -> Subject:
    world = armature.matrix_world
    heads = [world @ bone.head_local for bone in armature.data.bones] + \
            [world @ bone.tail_local for bone in armature.data.bones]
    low = min(p.z for p in heads)
    high = max(p.z for p in heads)
    forward = world.to_3x3() @ Vector((0, -1, 0))
    yaw = math.atan2(-forward.x, -forward.y)  # 0 when the character faces -Y, as the bundled rig does
    centre = sum(heads, Vector()) / len(heads)
    return Subject(Vector((centre.x, centre.y, (low + high) / 2)), yaw, max(high - low, 1e-3))


def view_camera(scene: bpy.types.Scene, subject: Subject, view: View, name: str) -> bpy.types.Object:
    """A camera looking at the character from `view`; wide enough to see any motion before framing."""
    camera = bpy.data.cameras.new(name)
    camera.type = view.projection
    azimuth = math.radians(view.azimuth_deg) + subject.yaw
    elevation = math.radians(view.elevation_deg)
    distance = subject.height * (12.0 if view.projection == "ORTHO" else 3.0)
    direction = Vector((-math.sin(azimuth) * math.cos(elevation), -math.cos(azimuth) * math.cos(elevation),
                        math.sin(elevation)))
    obj = bpy.data.objects.new(name, camera)
    obj.location = subject.origin + direction * distance
    obj.rotation_euler = (math.pi / 2 - elevation, 0.0, -azimuth)
    camera.clip_start = distance * 0.01
    camera.clip_end = distance * 4
    camera.sensor_fit = "AUTO"
    if view.projection == "ORTHO":
        camera.ortho_scale = subject.height * 4
    else:
        camera.lens = camera.sensor_width * distance / (subject.height * 4)
    scene.collection.objects.link(obj)
    return obj


def apply_framing(camera: bpy.types.Object, shared: framing.Framing) -> None:
    """Zoom and shift the camera so its own frame IS the auto-framed canvas (square canvas: a camera point
    at x goes to canvas x' = (scale * x + offset_x) / width, and likewise for y)."""
    data = camera.data
    zoom = shared.scale / shared.width
    if data.type == "ORTHO":
        data.ortho_scale /= zoom
    else:
        data.lens *= zoom
    data.shift_x = 0.5 - zoom * (0.5 - data.shift_x) - shared.offset_x / shared.width
    data.shift_y = zoom * (0.5 + data.shift_y) + shared.offset_y / shared.height - 0.5


def read_framed(scene, armature, action, camera, bone_map, size: int, with_hands: bool,
                frames: int | None = None) -> poses.PoseSequence:
    """The action's poses as the product would auto-frame them, with the camera reset to show exactly that
    framing; raises if the poses read through the reframed camera differ from the auto-framed ones."""
    sampling = reader.FrameSampling(count=frames)
    seen = reader.read_action(scene, armature, action, camera, bone_map, sampling)
    expected = reader.frame_action_poses([seen], 1.0, size, size, with_hands, True, MARGIN, GROUND)[0]
    apply_framing(camera, framing.auto_framing([seen.points], 1.0, size, size, MARGIN, GROUND))
    reframed = reader.read_action(scene, armature, action, camera, bone_map, sampling)
    actual = reader.frame_action_poses([reframed], 1.0, size, size, with_hands, auto_frame=False)[0]
    worst = 0.0
    for a, b in zip(expected.frames, actual.frames):
        both = (a.body[:, 2] > 0) & (b.body[:, 2] > 0)
        if both.any():
            worst = max(worst, float(np.abs(a.body[both, :2] - b.body[both, :2]).max()))
    if worst > MAX_FRAMING_ERROR_PX:
        raise SpriteDiffError(f"camera framing of {action.name!r} is off by {worst:.2f} px (internal error)")
    return actual


# ---------------------------------------------------------------------------------------------- rendering

def render_frames(scene: bpy.types.Scene, armature: bpy.types.Object, action: bpy.types.Action | None,
                  scene_frames: Sequence[float], directory: Path, names: Sequence[str]) -> list[Path]:
    """One RGBA PNG per scene frame with `action` driving the armature; the armature's animation is put back."""
    previous = armature.animation_data.action if armature.animation_data else None
    paths = []
    try:
        if action is not None:
            assign_action(armature, action)
        for frame, name in zip(scene_frames, names):
            whole = int(math.floor(frame))
            scene.frame_set(whole, subframe=frame - whole)
            path = directory / name
            bpy.ops.render.render()
            # Saving the result ourselves keeps Blender from printing a line per frame (write_still does).
            bpy.data.images["Render Result"].save_render(str(path), scene=scene)
            paths.append(path)
    finally:
        if armature.animation_data is not None:
            assign_action(armature, previous)
    return paths


def rest_action(armature: bpy.types.Object) -> bpy.types.Action:
    """A one-frame Action to read the rest pose through (the reader reads Actions); with the armature in
    Rest Position its keys change nothing."""
    bone = armature.pose.bones[0]
    data = {"name": "rest", "frames": 1, "fps": 8, "loop": False, "frame_start": 1, "frame_end": 1,
            "keyframes": [{"frame": 1, "bones": {bone.name: {}}}]}
    if bone.rotation_mode in ("QUATERNION", "AXIS_ANGLE"):
        previous = armature.animation_data.action if armature.animation_data else None
        action = bpy.data.actions.new(f"{armature.name}_rest")
        assign_action(armature, action)
        bone.keyframe_insert("location", frame=1)
        assign_action(armature, previous)
        action["spritediff_frames"], action["spritediff_fps"], action["spritediff_loop"] = 1, 8.0, False
        return action
    return rig_builder.add_preset_action(armature, data)


def render_references(scene, armature, subject: Subject, bone_map, size: int, with_hands: bool,
                      folder: Path) -> dict[str, str]:
    """front / three_quarter / side pictures and poses of the rest pose, each framed on its own."""
    folder.mkdir(parents=True)
    action = rest_action(armature)
    pose_position = armature.data.pose_position
    armature.data.pose_position = "REST"
    frames, paths = [], {}
    try:
        for name, azimuth in REFERENCE_AZIMUTHS.items():
            camera = view_camera(scene, subject, View(name, azimuth), f"sd_reference_{name}")
            scene.camera = camera
            sequence = read_framed(scene, armature, action, camera, bone_map, size, with_hands)
            frames.append(sequence.frames[0])
            render_frames(scene, armature, action, [sequence.metadata["scene_frames"][0]], folder, [f"{name}.png"])
            paths[name] = f"reference/{name}.png"
    finally:
        armature.data.pose_position = pose_position
        bpy.data.actions.remove(action)
    drawing.write_pose_sequence(poses.PoseSequence(frames, name="reference", fps=1.0, loop=False), folder,
                                keep_other_files=True)  # beside the reference renders
    return paths


def render_clip(scene, armature, subject: Subject, action, plan: ClipPlan, bone_map, size: int,
                with_hands: bool, folder: Path) -> int:
    if plan.view.name == "side" and subject.yaw == 0.0 and armature.get("spritediff_bone_map") == "spritediff":
        camera = rig_builder.add_camera(scene, "side", name="sd_side")  # the presets' own side camera
        camera.data.ortho_scale = subject.height * 4
    else:
        camera = view_camera(scene, subject, plan.view, f"sd_{plan.view.name}")
    scene.camera = camera
    sequence = read_framed(scene, armature, action, camera, bone_map, size, with_hands)
    folder.mkdir(parents=True)
    names = frame_names(len(sequence))
    render_frames(scene, armature, action, sequence.metadata["scene_frames"], folder, names)
    drawing.write_pose_sequence(sequence, folder, keep_other_files=True)  # beside the frame renders
    write_json(folder / "clip.json", {"motion": plan.motion, "preset": plan.preset, "variation": plan.variation,
                                      "view": plan.view.to_json(), "fps": sequence.fps, "loop": sequence.loop,
                                      "frames": len(sequence)})
    return len(sequence)


def finish_frames(folder: Path, outline: str | None) -> None:
    """The silhouette outline comes from the core (`pixelart.add_outline`): exactly 1 px in one colour at any
    render size, as pixel-art sprites have; Workbench's own outline is per object and not sized in pixels."""
    if outline:
        colour = tuple(int(outline[i:i + 2], 16) for i in (1, 3, 5))
        paths = sorted(folder.glob("reference/*.png")) + sorted(folder.glob("clips/*/frame_*.png"))
        paths = [p for p in paths if not p.name.startswith("pose_")]
        dataset_images.outline_files(paths, colour)


# ---------------------------------------------------------------------------------------------- characters

class CharacterFolder:
    """Renders go into a hidden folder beside the target, renamed into place only when complete."""

    def __init__(self, out: Path, name: str) -> None:
        self.final = out / name
        self.staging = out / f".{name}.partial"

    def __enter__(self) -> Path:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return self.staging

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            os.replace(self.staging, self.final)
        else:
            shutil.rmtree(self.staging, ignore_errors=True)


def render_procedural_character(out: Path, index: int, options: DatasetOptions) -> int:
    rng = character_rng(options.seed, index)
    recipe = character_recipe(rng)
    plans = clip_plans(rng, options.clips, options.directions)
    name = f"char_{index:04d}"
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    setup_render(scene, options.size, flat_workbench=True,
                 inner_lines=(recipe["outline"] or "#202020") if recipe["inner_lines"] else None)
    armature = rig_builder.build_armature(scene, name="Character", rig_data=proportioned_rig(recipe))
    build_body(scene, armature, recipe, rng)
    bone_map = reader.resolve_bone_map(armature, None)
    subject = subject_of(armature)
    with CharacterFolder(out, name) as folder:
        references = render_references(scene, armature, subject, bone_map, options.size, bone_map.has_hands(),
                                       folder / "reference")
        clip_names, frames = [], 3
        for number, plan in enumerate(plans):
            action = rig_builder.add_preset_action(armature, plan.motion_data)
            clip = plan.name(number)
            frames += render_clip(scene, armature, subject, action, plan, bone_map, options.size,
                                  bone_map.has_hands(), folder / "clips" / clip)
            clip_names.append(clip)
        finish_frames(folder, recipe["outline"])
        write_json(folder / CHARACTER_FILE, {"name": name, "seed": options.seed, "index": index, "recipe": recipe,
                                            "references": references, "clips": clip_names})
    return frames


def animating_actions(armature: bpy.types.Object) -> list[bpy.types.Action]:
    """Actions whose curves drive pose bones of this armature."""
    names = {bone.name for bone in armature.data.bones}
    found = []
    for action in bpy.data.actions:
        paths = [curve.data_path for curve in action_fcurves(action)]
        bones = {m.group(1) for p in paths for m in [re.match(r'pose\.bones\["(.+?)"\]', p)] if m}
        if bones & names:
            found.append(action)
    return found


def blend_views(directions: int) -> list[View]:
    ring = [View(direction_name(a), a) for a in (i * 360.0 / directions for i in range(directions))
            if abs(a - SIDE_AZIMUTH) > 1e-6]
    return [View("side", SIDE_AZIMUTH), *ring]


def blend_character_name(armature_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", armature_name).strip("._") or "character"


def render_blend_character(out: Path, options: DatasetOptions) -> int:
    scene = bpy.context.scene
    armature = reader.find_armature(options.armature)
    actions = ([reader.find_action(armature, name) for name in options.actions] if options.actions
               else animating_actions(armature))
    if not actions:
        raise SpriteDiffError(f"no Action animates armature {armature.name!r}: pass --actions")
    bone_map = reader.resolve_bone_map(armature, None)
    keep = {armature, *armature.children_recursive}
    for obj in scene.objects:  # only the character shows (in memory; the file is never saved)
        deformed = any(m.type == "ARMATURE" and m.object == armature for m in getattr(obj, "modifiers", ()))
        if obj not in keep and not deformed and obj.type not in ("LIGHT", "CAMERA"):
            obj.hide_render = True
    setup_render(scene, options.size, flat_workbench=False)
    subject = subject_of(armature)
    name = blend_character_name(armature.name)
    with CharacterFolder(out, name) as folder:
        references = render_references(scene, armature, subject, bone_map, options.size, bone_map.has_hands(),
                                       folder / "reference")
        clip_names, frames, number = [], 3, 0
        for action in actions:
            for view in blend_views(options.directions):
                plan = ClipPlan(re.sub(r"[^A-Za-z0-9]+", "-", action.name).strip("-") or "action", None,
                                {"action": action.name}, view)
                clip = plan.name(number)
                frames += render_clip(scene, armature, subject, action, plan, bone_map, options.size,
                                      bone_map.has_hands(), folder / "clips" / clip)
                clip_names.append(clip)
                number += 1
        recipe = {"blend": Path(options.blend).name, "armature": armature.name,
                  "actions": [a.name for a in actions], "engine": scene.render.engine}
        write_json(folder / CHARACTER_FILE, {"name": name, "seed": options.seed, "recipe": recipe,
                                            "references": references, "clips": clip_names})
    return frames


MAX_RENDER_SIZE = 2048  # training frames: far above any sprite, well within a headless render's memory


def run_dataset(options: DatasetOptions) -> None:
    out = Path(options.out)
    source = "blend" if options.blend else "procedural"
    if not 16 <= options.size <= MAX_RENDER_SIZE:
        raise SpriteDiffError(f"--size must be from 16 to {MAX_RENDER_SIZE} pixels, got {options.size}")
    if options.first < 0 or options.seed < 0:
        raise SpriteDiffError("--first and --seed must be at least 0")
    if options.blend and options.characters:
        raise SpriteDiffError("give either --characters N (procedural) or --blend FILE, not both")
    if options.actions and not options.blend:
        raise SpriteDiffError("--actions needs --blend FILE (procedural characters use the preset motions)")
    if options.directions < 1 or options.clips < 1:
        raise SpriteDiffError("--directions and --clips must be at least 1")
    if options.blend:
        if not options.armature:
            raise SpriteDiffError("--blend needs --armature NAME")
        if not Path(options.blend).is_file():
            raise SpriteDiffError(f"blend file {options.blend} does not exist")
    elif options.characters < 1:
        raise SpriteDiffError("give --characters N (at least 1) or --blend FILE --armature NAME")
    check_output(out, source, options.size, options.seed)

    if options.blend:
        from .blend_files import open_blend

        open_blend(options.blend)
        reader.find_armature(options.armature)  # a wrong name fails before anything is written
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(out, source, options.size, options.seed)
        if (out / blend_character_name(options.armature) / CHARACTER_FILE).is_file():
            print(f"{options.armature}: already complete, skipped", flush=True)
            return
        started = time.perf_counter()
        frames = render_blend_character(out, options)
        write_manifest(out, source, options.size, options.seed)
        seconds = time.perf_counter() - started
        print(f"{options.armature}: {frames} frames in {seconds:.1f} s ({seconds / frames:.3f} s/frame) -> {out}",
              flush=True)
        return

    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, source, options.size, options.seed)
    indices = range(options.first, options.first + options.characters)
    for number, index in enumerate(indices, 1):
        name = f"char_{index:04d}"
        if (out / name / CHARACTER_FILE).is_file():
            print(f"[{number}/{len(indices)}] {name}: already complete, skipped", flush=True)
            continue
        started = time.perf_counter()
        frames = render_procedural_character(out, index, options)
        write_manifest(out, source, options.size, options.seed)
        seconds = time.perf_counter() - started
        print(f"[{number}/{len(indices)}] {name}: {frames} frames in {seconds:.1f} s "
              f"({seconds / frames:.3f} s/frame)", flush=True)
