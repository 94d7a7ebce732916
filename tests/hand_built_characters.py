"""Three characters built by hand in Blender, unlike the dataset generator's: to show the sprite model on
characters it was not trained on (other proportions, clothing and construction).

- Dwarf: short legs, a broad barrel body, a big head in a horned helmet, a long pointed red beard and a war
  hammer held out in front.
- Elf: a very tall, thin mage with a long neck, pointed ears, golden hair, a long flared robe skinned to the
  hips and legs (it swings with them), a tall pointed hat bending back and a crystal staff.
- Robot: a round-shouldered robot knight: boxy bevelled armour plates, a big bucket helmet with a glowing
  visor and a crest, ring joints, big boots and a round shield on its left arm.

Each is the bundled rig (`rig_builder.build_armature`) with hand-edited proportions outside the generator's
ranges, its own meshes written here (icospheres, bevelled boxes, tori, cones, lofted shapes) in flat
colours, and the preset Actions; saved as its own .blend with a flat Workbench scene, ready for
`python -m blender_addon dataset --blend FILE --armature NAME`.

    python tests/hand_built_characters.py OUT_DIR [--size 128] [--directions 8]

builds OUT_DIR/blends/*.blend and renders all three into the one dataset folder OUT_DIR/dataset.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

if __name__ == "__main__":  # run as a script: the repository root holds blender_addon
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Blender's module writes user resources into the home folder unless told otherwise (as in conftest.py).
os.environ.setdefault("BLENDER_USER_RESOURCES", str(Path(__file__).parent / ".blender_user"))

import bmesh  # noqa: E402
import bpy  # noqa: E402  (first: the bmesh module exists once bpy is loaded)
from mathutils import Matrix, Vector  # noqa: E402

from blender_addon import rig_builder  # noqa: E402

ACTIONS = ("walk", "idle", "attack", "run")  # jump's fixed crouch depth sinks very short legs into the floor
# The rig stands on z = 0. Soles go no lower: the framing keeps only 8 % of the picture below the ankles.
FLOOR_Z = 0.0
SIDES = (("L", 1.0), ("R", -1.0))  # bone name suffix, sign of x (the character's left is +X)

# ---------------------------------------------------------------------------------------------- rig

REGION_OF_BONE = (  # bone name prefix -> body region whose stretch it takes
    ("root", "legs"), ("thigh", "legs"), ("shin", "legs"), ("foot", "feet"), ("hips", "hips"),
    ("spine", "torso"), ("chest", "torso"), ("neck", "neck"), ("head", "head"), ("nose", "head"),
    ("eye", "head"), ("ear", "head"), ("shoulder", "shoulders"), ("upper_arm", "arms"), ("forearm", "arms"),
    ("hand", "hands"), ("thumb", "hands"), ("index", "hands"), ("middle", "hands"), ("ring", "hands"),
    ("little", "hands"),
)


def stretched_rig(stretch: dict[str, tuple[float, float, float]]) -> dict:
    """A hand-edited copy of the bundled rig: each bone's vector is multiplied (x, y, z) by its region's
    stretch, and a child's offset from its parent's head by the parent's, so joints stay joined. The root's
    offset to the hips takes the legs' stretch: the pelvis stays on top of the legs."""
    rig = rig_builder.load_rig_data()

    def factors(name: str) -> Vector:
        region = next(region for prefix, region in REGION_OF_BONE if name.startswith(prefix))
        return Vector(stretch.get(region, (1.0, 1.0, 1.0)))

    def scaled(offset: Vector, by: Vector) -> Vector:
        return Vector([a * b for a, b in zip(offset, by)])

    original = {spec["name"]: Vector(spec["head"]) for spec in rig["bones"]}
    heads: dict[str, Vector] = {}
    bones = []
    for spec in rig["bones"]:  # parents come first in the rig file
        head = Vector(spec["head"])
        parent = spec.get("parent")
        if parent:
            head = heads[parent] + scaled(head - original[parent], factors(parent))
        heads[spec["name"]] = head
        tail = head + scaled(Vector(spec["tail"]) - Vector(spec["head"]), factors(spec["name"]))
        bones.append({**spec, "head": list(head), "tail": list(tail)})
    return {**rig, "bones": bones}


def uniform(factor: float) -> tuple[float, float, float]:
    return (factor, factor, factor)


# ---------------------------------------------------------------------------------------------- materials

def linear_rgba(hex_colour: str) -> tuple[float, float, float, float]:
    """sRGB hex -> the linear colour Blender stores (the Standard view transform shows the hex again)."""
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    return (*[c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels], 1.0)


def flat_material(hex_colour: str) -> bpy.types.Material:
    """One colour for Workbench (viewport colour, MATERIAL colour mode) and for node engines (base colour)."""
    name = f"flat_{hex_colour[1:]}"
    material = bpy.data.materials.get(name)
    if material is None:
        material = bpy.data.materials.new(name)
        material.diffuse_color = linear_rgba(hex_colour)
        material.roughness = 1.0
        if material.node_tree is None:  # Blender before 5.0 makes materials without nodes
            material.use_nodes = True
        shader = material.node_tree.nodes.get("Principled BSDF")
        shader.inputs["Base Color"].default_value = linear_rgba(hex_colour)
        shader.inputs["Roughness"].default_value = 1.0
    return material


def flat_workbench(scene: bpy.types.Scene) -> None:
    """Flat lighting, material colours, anti-aliased edges: the look of the sprites."""
    scene.render.engine = "BLENDER_WORKBENCH"
    shading = scene.display.shading
    shading.light = "FLAT"
    shading.color_type = "MATERIAL"
    shading.show_cavity = shading.show_shadows = shading.show_specular_highlight = False
    shading.show_object_outline = False
    scene.display.render_aa = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"


# ---------------------------------------------------------------------------------------------- shapes

def _pointing(axis: Vector) -> Matrix:
    """A rotation taking +Z to `axis`."""
    return axis.normalized().to_track_quat("Z", "Y").to_matrix().to_4x4()


class Part:
    """One object's mesh in the armature's rest space, made of shapes in flat colours (one material slot
    per colour). Each method adds a shape and returns the part, so shapes chain."""

    def __init__(self) -> None:
        self.bm = bmesh.new()
        self.colours: list[str] = []

    def _add(self, shape: bmesh.types.BMesh, colours: Sequence[str]) -> Part:
        """Append `shape`, whose faces' material indices point into `colours`."""
        slots = []
        for colour in colours:
            if colour not in self.colours:
                self.colours.append(colour)
            slots.append(self.colours.index(colour))
        for face in shape.faces:
            face.material_index = slots[face.material_index]
        mesh = bpy.data.meshes.new("shape")
        shape.to_mesh(mesh)
        shape.free()
        self.bm.from_mesh(mesh)
        bpy.data.meshes.remove(mesh)
        return self

    def sphere(self, colour: str, centre: Vector, radii: Sequence[float], detail: int = 2,
               keep: Callable[[Vector], bool] | None = None) -> Part:
        """An icosphere scaled to `radii`; `keep` (on the unit sphere's coordinates) cuts it into domes."""
        shape = bmesh.new()
        bmesh.ops.create_icosphere(shape, subdivisions=detail, radius=1.0)
        if keep is not None:
            bmesh.ops.delete(shape, geom=[v for v in shape.verts if not keep(v.co)], context="VERTS")
        shape.transform(Matrix.Translation(centre) @ Matrix.Diagonal((*radii, 1.0)))
        return self._add(shape, [colour])

    def box(self, colour: str, centre: Vector, size: Sequence[float], bevel: float = 0.0) -> Part:
        """A box with its edges rounded off by `bevel` (absolute size)."""
        shape = bmesh.new()
        bmesh.ops.create_cube(shape, size=1.0, matrix=Matrix.Diagonal((*size, 1.0)))
        if bevel > 0:
            bmesh.ops.bevel(shape, geom=list(shape.verts) + list(shape.edges), offset=bevel, segments=3,
                            profile=0.5, affect="EDGES")
        shape.transform(Matrix.Translation(centre))
        return self._add(shape, [colour])

    def cylinder(self, colour: str, start: Vector, end: Vector, radius: float, end_radius: float | None = None,
                 segments: int = 12) -> Part:
        """A capped cylinder or cone (`end_radius` 0 makes a point) from `start` to `end`."""
        axis = end - start
        shape = bmesh.new()
        bmesh.ops.create_cone(shape, cap_ends=True, segments=segments, radius1=radius,
                              radius2=radius if end_radius is None else end_radius, depth=axis.length)
        shape.transform(Matrix.Translation((start + end) / 2) @ _pointing(axis))
        return self._add(shape, [colour])

    def torus(self, colour: str, centre: Vector, axis: Vector, major: float, minor: float,
              squash: float = 1.0, rings: int = 24, sides: int = 8) -> Part:
        """A ring round `axis`; `squash` flattens it front to back (belts round an oval waist)."""
        shape = bmesh.new()
        grid = []
        for i in range(rings):
            a = 2 * math.pi * i / rings
            grid.append([shape.verts.new(((major + minor * math.cos(b)) * math.cos(a),
                                          (major + minor * math.cos(b)) * math.sin(a) * squash,
                                          minor * math.sin(b)))
                         for b in (2 * math.pi * j / sides for j in range(sides))])
        for i in range(rings):
            for j in range(sides):
                shape.faces.new((grid[i][j], grid[(i + 1) % rings][j], grid[(i + 1) % rings][(j + 1) % sides],
                                 grid[i][(j + 1) % sides]))
        shape.transform(Matrix.Translation(centre) @ _pointing(axis))
        return self._add(shape, [colour])

    def loft(self, colour: str, path: Sequence[Vector], radii: Sequence[float], depth: float = 1.0,
             segments: int = 12, hem: str | None = None) -> Part:
        """Rings along a bent path (horns, beards, hats, robes): ring i has radius radii[i] across and
        radii[i] * depth front to back; a radius of 0 at either end closes it in a point. `hem` colours the
        last span."""
        shape = bmesh.new()
        rings = []
        for i, (point, radius) in enumerate(zip(path, radii)):
            direction = path[min(i + 1, len(path) - 1)] - path[max(i - 1, 0)]
            side = Vector((1, 0, 0)) if abs(direction.normalized().x) < 0.9 else Vector((0, 0, 1))
            across = (side - side.project(direction)).normalized()
            front = direction.cross(across).normalized()
            if radius <= 0:
                rings.append([shape.verts.new(point)])
                continue
            u, v = across * radius, front * (radius * depth)
            rings.append([shape.verts.new(point + u * math.cos(a) + v * math.sin(a))
                          for a in (2 * math.pi * j / segments for j in range(segments))])
        for i in range(len(rings) - 1):
            upper, lower = rings[i], rings[i + 1]
            index = 1 if hem and i == len(rings) - 2 else 0
            for j in range(segments):
                corners = [upper[j % len(upper)], upper[(j + 1) % len(upper)], lower[(j + 1) % len(lower)],
                           lower[j % len(lower)]]
                corners = list(dict.fromkeys(corners))  # a point end leaves triangles
                shape.faces.new(corners).material_index = index
        for ring in (rings[0], rings[-1]):
            if len(ring) > 2:
                shape.faces.new(ring).material_index = 1 if hem and ring is rings[-1] else 0
        return self._add(shape, [colour, hem or colour])


# ---------------------------------------------------------------------------------------------- characters

class Character:
    """An armature with hand-placed parts: `attach` hangs a part rigidly on a bone (bone parenting), `skin`
    deforms one with the armature by per-vertex bone weights."""

    def __init__(self, name: str, stretch: dict[str, tuple[float, float, float]]) -> None:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        self.scene = bpy.context.scene
        flat_workbench(self.scene)
        self.armature = rig_builder.build_armature(self.scene, name=name, rig_data=stretched_rig(stretch))
        self.name = name

    def head(self, bone: str) -> Vector:
        return self.armature.data.bones[bone].head_local.copy()

    def tail(self, bone: str) -> Vector:
        return self.armature.data.bones[bone].tail_local.copy()

    def at(self, bone: str, fraction: float) -> Vector:
        return self.head(bone).lerp(self.tail(bone), fraction)

    def length(self, bone: str) -> float:
        return self.armature.data.bones[bone].length

    def _object(self, label: str, part: Part) -> bpy.types.Object:
        mesh = bpy.data.meshes.new(f"{self.name}_{label}")
        part.bm.normal_update()
        part.bm.to_mesh(mesh)
        part.bm.free()
        for colour in part.colours:
            mesh.materials.append(flat_material(colour))
        obj = bpy.data.objects.new(f"{self.name}_{label}", mesh)
        self.scene.collection.objects.link(obj)
        return obj

    def attach(self, bone: str, label: str, part: Part) -> bpy.types.Object:
        obj = self._object(label, part)
        obj.parent, obj.parent_type, obj.parent_bone = self.armature, "BONE", bone
        # A bone child is placed at the bone's tail; undo that so the rest-space vertices stay where built.
        bone_data = self.armature.data.bones[bone]
        obj.matrix_parent_inverse = (bone_data.matrix_local @ Matrix.Translation((0, bone_data.length, 0))).inverted()
        return obj

    def skin(self, label: str, part: Part, weights: Callable[[Vector], dict[str, float]]) -> bpy.types.Object:
        obj = self._object(label, part)
        obj.parent = self.armature
        for vertex in obj.data.vertices:
            for bone, weight in weights(vertex.co).items():
                if weight > 0:
                    group = obj.vertex_groups.get(bone) or obj.vertex_groups.new(name=bone)
                    group.add([vertex.index], weight, "REPLACE")
        obj.modifiers.new("Armature", "ARMATURE").object = self.armature
        return obj

    def animate(self) -> None:
        for preset in ACTIONS:
            rig_builder.add_preset_action(self.armature, preset)

    def save(self, path: Path) -> tuple[Path, str]:
        self.animate()
        sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))  # for lit engines; Workbench is flat
        sun.rotation_euler = (math.radians(50), 0, math.radians(30))
        self.scene.collection.objects.link(sun)
        path.parent.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(path))
        return path, self.name


def on_surface(centre: Vector, radii: Sequence[float], toward: Vector) -> Vector:
    """Where the ray from an ellipsoid's centre towards `toward` leaves it (eyes sit on the face, where the
    rig's eye points, inside the head, would hide them)."""
    direction = (toward - centre).normalized()
    return centre + direction / math.sqrt(sum((d / r) ** 2 for d, r in zip(direction, radii)))


def sole_block(ankle: Vector, width: float, heel: float, toe: float, top: float) -> tuple[Vector, tuple]:
    """(centre, size) of a boot block standing on the floor under `ankle`, `heel` behind it and `toe` in
    front of it, up to `top` above it. Short toes: the presets tilt the feet by up to about 40 degrees."""
    centre = Vector((ankle.x, ankle.y + (heel - toe) / 2, (ankle.z + top + FLOOR_Z) / 2))
    return centre, (width, heel + toe, ankle.z + top - FLOOR_Z)


def above(z: float) -> Callable[[Vector], bool]:
    return lambda unit: unit.z >= z


def limb_bones(side: str) -> tuple[str, ...]:
    """shoulder, upper_arm, forearm, hand, thigh, shin, foot of one side ("L" or "R")."""
    return tuple(f"{bone}.{side}" for bone in ("shoulder", "upper_arm", "forearm", "hand", "thigh", "shin", "foot"))


def build_dwarf(path: Path) -> tuple[Path, str]:
    c = Character("Dwarf", {"legs": (1.0, 1.0, 0.5), "feet": (1.4, 1.4, 1.0), "hips": (1.6, 1.0, 1.0),
                            "torso": (1.3, 1.3, 0.9), "shoulders": (1.5, 1.0, 1.0), "arms": uniform(0.85),
                            "hands": uniform(1.3), "neck": (1.0, 1.0, 0.5), "head": uniform(1.35)})
    skin, nose, beard, steel, dark_steel, horn = "#e9b48c", "#d9826a", "#c4561f", "#9aa6b2", "#66717d", "#efe4c6"
    tunic, trousers, leather, gold, boots, eyes = "#3d7a3a", "#6e4b2a", "#4a2f1a", "#e0b83a", "#3b2b20", "#1a1a1a"
    wood = "#8b5a2b"

    r = 0.575 * c.length("head")  # head radius, from the head bone as the rig's eyes and ears sit
    head = c.at("head", 0.42)
    head_radii = (r, r * 0.95, r)
    face = (Part().sphere(skin, head, head_radii, detail=3)
            .sphere(nose, c.tail("nose") - Vector((0, 0, r * 0.05)), (r * 0.3,) * 3))
    for side, sign in SIDES:
        face.sphere(skin, c.tail(f"ear.{side}"), (r * 0.2,) * 3)
        # Eyes a little below the rig's eye points, under the helmet's rim, which is his brow.
        eye = on_surface(head, head_radii, c.tail(f"eye.{side}") - Vector((0, 0, r * 0.15)))
        face.sphere(eyes, eye, (r * 0.12, r * 0.08, r * 0.13))
        face.sphere(beard, c.tail("nose") + Vector((sign * r * 0.32, r * 0.2, -r * 0.32)),
                    (r * 0.38, r * 0.16, r * 0.13))  # moustache
    # The beard hangs from the jaw down the front of the chest, narrowing to a point at the belly.
    shoulder_half = abs(c.tail("shoulder.L").x)
    chest, belly = c.at("chest", 0.45), c.at("spine", 0.4)
    chest_radii = (shoulder_half * 0.95, shoulder_half * 0.7, c.length("chest") * 0.85)
    belly_radii = (shoulder_half * 0.95, shoulder_half * 0.75, c.length("spine") * 0.9)
    face.loft(beard, [head + Vector((0, -r * 0.55, -r * 0.2)),
                      Vector((0, chest.y - chest_radii[1] * 0.85, chest.z + chest_radii[2] * 0.5)),
                      Vector((0, chest.y - chest_radii[1] * 0.95, chest.z - chest_radii[2] * 0.3)),
                      Vector((0, belly.y - belly_radii[1], belly.z))],
              [r * 0.95, r * 0.95, r * 0.65, 0.0], depth=0.6)
    dome = head + Vector((0, 0, r * 0.45))
    face.sphere(steel, dome, (r * 1.08,) * 3, detail=3, keep=above(-0.1))
    face.torus(dark_steel, dome - Vector((0, 0, r * 0.1)), Vector((0, 0, 1)), r * 1.07, r * 0.12)
    for _, sign in SIDES:  # horns curl out and up from the helmet's sides
        base = dome + Vector((sign * r * 0.95, 0, r * 0.3))
        face.loft(horn, [base + Vector((sign * r * x, 0, r * z)) for x, z in ((0, 0), (0.35, 0.1), (0.6, 0.45),
                                                                              (0.62, 0.85))],
                  [r * 0.22, r * 0.17, r * 0.1, 0.0], segments=8)
    c.attach("head", "head", face)
    c.attach("neck", "neck", Part().cylinder(skin, c.head("neck"), c.tail("neck"), r * 0.45))

    c.attach("chest", "chest", Part().sphere(tunic, chest, chest_radii, detail=3))
    belt = c.head("spine") + Vector((0, 0, c.length("spine") * 0.1))
    c.attach("spine", "belly", Part().sphere(tunic, belly, belly_radii, detail=3)
             .torus(leather, belt, Vector((0, 0, 1)), belly_radii[0] * 0.97, r * 0.12, squash=0.8)
             .box(gold, belt - Vector((0, belly_radii[1] * 0.82, 0)), (r * 0.5, r * 0.15, r * 0.4), bevel=r * 0.05))
    hip_half = abs(c.head("thigh.L").x)
    c.attach("hips", "pelvis", Part().sphere(trousers, c.at("hips", 0.2),
                                             (hip_half * 1.55, hip_half, c.length("hips") * 1.3)))

    arm, leg = r * 0.38, hip_half * 0.85
    for side, _ in SIDES:
        shoulder, upper, fore, hand, thigh, shin, foot = limb_bones(side)
        c.attach(shoulder, shoulder, Part().sphere(tunic, c.tail(shoulder), (arm * 1.35,) * 3))
        c.attach(upper, upper, Part().cylinder(tunic, c.head(upper), c.tail(upper), arm * 1.15, arm))
        c.attach(fore, fore, Part().sphere(skin, c.head(fore), (arm * 0.95,) * 3)  # rolled-up sleeves, bracers
                 .cylinder(skin, c.head(fore), c.tail(fore), arm * 0.95, arm * 0.9)
                 .torus(leather, c.at(fore, 0.7), c.tail(fore) - c.head(fore), arm * 0.95, arm * 0.35))
        c.attach(hand, hand, Part().sphere(skin, c.at(hand, 0.4), (arm * 1.25, arm * 1.2, arm * 1.4)))
        c.attach(thigh, thigh, Part().cylinder(trousers, c.head(thigh), c.tail(thigh), leg, leg * 0.9))
        ankle = c.head(foot)
        c.attach(shin, shin, Part().sphere(trousers, c.head(shin), (leg * 0.9,) * 3)
                 .cylinder(boots, c.at(shin, 0.25), ankle, leg * 0.95, leg * 0.9)
                 .torus(leather, c.at(shin, 0.25), c.tail(shin) - c.head(shin), leg * 0.95, leg * 0.2))
        c.attach(foot, foot, Part().box(boots, *sole_block(ankle, leg * 2.1, leg * 0.6, leg * 1.05, leg * 0.4),
                                        bevel=leg * 0.35))

    # War hammer held out in front: the handle leaves the fist forwards (-Y), the head stands upright.
    grip = c.at("hand.R", 0.45)
    end = grip - Vector((0, c.length("upper_arm.R") * 1.4, 0))
    c.attach("hand.R", "hammer", Part().cylinder(wood, grip + Vector((0, arm * 1.5, 0)), end, arm * 0.3)
             .box(dark_steel, end, (arm * 2.0, arm * 2.2, arm * 4.0), bevel=arm * 0.3)
             .torus(gold, grip.lerp(end, 0.8), Vector((0, 1, 0)), arm * 0.35, arm * 0.12))
    return c.save(path)


def build_elf(path: Path) -> tuple[Path, str]:
    c = Character("Elf", {"legs": (1.0, 1.0, 1.35), "feet": uniform(1.0), "hips": (0.8, 1.0, 1.0),
                          "torso": (0.75, 0.9, 1.2), "shoulders": (0.75, 1.0, 1.0), "arms": uniform(1.25),
                          "hands": uniform(1.1), "neck": (1.0, 1.0, 1.5), "head": uniform(1.0)})
    skin, hair, robe, trim, hat, band = "#f4dcc6", "#f2d16b", "#4a2c82", "#e6b422", "#1f2a6b", "#e6b422"
    sash, eyes, legs, wood, crystal = "#2e8b57", "#2f8f4f", "#3a2a4a", "#6b4423", "#5fe3ff"

    r = 0.575 * c.length("head")
    head = c.at("head", 0.42)
    head_radii = (r * 0.85, r * 0.9, r * 1.1)  # a narrow, long face
    face = Part().sphere(skin, head, head_radii, detail=3)
    face.cylinder(skin, c.tail("nose") + Vector((0, r * 0.35, 0)), c.tail("nose"), r * 0.16, 0.0, segments=6)
    for side, sign in SIDES:
        face.sphere(eyes, on_surface(head, head_radii, c.tail(f"eye.{side}")), (r * 0.14, r * 0.08, r * 0.16))
        ear = c.tail(f"ear.{side}")  # long pointed ears through the ear keypoint, sweeping back and up
        root, tip = ear - Vector((sign * r * 0.35, 0, r * 0.05)), ear + Vector((sign * r * 0.9, r * 0.3, r * 0.6))
        face.loft(skin, [root, ear, tip], [r * 0.24, r * 0.18, 0.0], depth=0.45, segments=8)
    # Golden hair falling down the back from under the hat.
    face.loft(hair, [head + Vector((0, r * y, r * z)) for y, z in ((0.1, 0.6), (0.7, -0.1), (0.85, -1.4), (0.8, -2.7))],
              [r * 0.95, r * 0.92, r * 0.85, r * 0.55], depth=0.45)
    # The hat: a wide brim and a tall cone bending back towards its tip (kept under the framing's head room).
    brim = head + Vector((0, 0, r * 0.45))
    face.cylinder(hat, brim, brim + Vector((0, 0, r * 0.08)), r * 1.75, segments=24)
    face.torus(hat, brim, Vector((0, 0, 1)), r * 1.7, r * 0.12)
    face.loft(hat, [brim + Vector((0, r * y, r * z)) for y, z in ((0, 0), (0, 0.85), (0, 1.7), (0.3, 2.35),
                                                                  (0.85, 2.85), (1.55, 3.05))],
              [r * 1.0, r * 0.75, r * 0.52, r * 0.33, r * 0.17, 0.0], segments=16)
    face.torus(band, brim + Vector((0, 0, r * 0.3)), Vector((0, 0, 1)), r * 0.92, r * 0.13)
    c.attach("head", "head", face)
    c.attach("neck", "neck", Part().cylinder(skin, c.head("neck"), c.tail("neck"), r * 0.3))

    # The robe: one loft from the collar to the ankles, flaring out, skinned so its skirt follows the legs.
    shoulder_half, hip_half = abs(c.tail("shoulder.L").x), abs(c.head("thigh.L").x)
    collar, ankle_z = c.tail("chest").z, c.head("foot.L").z
    length = collar - (ankle_z + 0.02)
    profile = ((0.0, 0.55), (0.06, 0.95), (0.2, 0.8), (0.35, 0.75), (0.45, 0.85), (0.7, 1.15), (0.93, 1.5),
               (1.0, 1.6))  # (fraction down the robe, radius in half shoulder widths)
    trunk_z = (c.head("thigh.L").z, c.head("spine").z, c.head("chest").z)
    c.skin("robe", Part().loft(robe, [Vector((0, 0, collar - length * t)) for t, _ in profile],
                               [shoulder_half * w for _, w in profile], depth=0.7, segments=20, hem=trim),
           lambda co: robe_weights(co, hip_half, trunk_z, c.head("shin.L").z, ankle_z))
    c.attach("spine", "sash", Part().torus(sash, c.at("spine", 0.15), Vector((0, 0, 1)), shoulder_half * 0.77,
                                           r * 0.13, squash=0.7))

    arm = r * 0.35
    leg = arm * 0.9
    for side, _ in SIDES:
        shoulder, upper, fore, hand, thigh, shin, foot = limb_bones(side)
        c.attach(shoulder, shoulder, Part().sphere(robe, c.tail(shoulder), (arm * 1.4,) * 3))
        c.attach(upper, upper, Part().cylinder(robe, c.head(upper), c.tail(upper), arm * 1.2, arm * 1.1))
        elbow, wrist = c.head(fore), c.tail(fore)  # a bell sleeve flaring to the wrist, with a gold cuff
        c.attach(fore, fore, Part().sphere(robe, elbow, (arm * 1.1,) * 3)
                 .cylinder(robe, elbow, wrist, arm * 1.1, arm * 2.3)
                 .torus(trim, wrist, wrist - elbow, arm * 2.3, arm * 0.3))
        c.attach(hand, hand, Part().sphere(skin, c.at(hand, 0.45), (arm * 0.9, arm * 0.8, arm * 1.5)))
        c.attach(thigh, thigh, Part().cylinder(legs, c.head(thigh), c.tail(thigh), leg))
        c.attach(shin, shin, Part().cylinder(legs, c.head(shin), c.tail(shin), leg))
        ankle, toe = c.head(foot), c.tail(foot)
        shoe = [ankle + Vector((0, leg, -leg * 0.3)), ankle - Vector((0, 0, leg * 0.5)), toe,
                toe + Vector((0, -leg * 2.0, leg * 1.5))]  # pointed, the toe curling up
        c.attach(foot, foot, Part().loft(legs, shoe, [leg * 1.3, leg * 1.4, leg * 0.9, 0.0], depth=0.8, segments=10))

    # A crystal staff, upright in the right hand, from the knee to shoulder height.
    grip = c.at("hand.R", 0.45)
    low = Vector((grip.x, grip.y, c.head("shin.R").z))
    high = Vector((grip.x, grip.y, grip.z + (c.tail("shoulder.R").z - grip.z) * 1.05))
    c.attach("hand.R", "staff", Part().cylinder(wood, low, high, arm * 0.5)
             .torus(trim, high, Vector((0, 0, 1)), arm * 0.8, arm * 0.25)
             .sphere(crystal, high + Vector((0, 0, arm * 1.3)), (arm * 0.9, arm * 0.9, arm * 1.6), detail=1))
    return c.save(path)


def robe_weights(co: Vector, hip_half: float, trunk_z: tuple[float, float, float], knee_z: float,
                 ankle_z: float) -> dict[str, float]:
    """Chest and belly follow the spine bones; below the hips the skirt follows the nearer leg more and more
    (the thigh down to the knee, then the shin), so the legs stay inside it; its front and back, halfway
    between the legs, stretch between them like cloth."""
    hip_z, spine_z, chest_z = trunk_z
    if co.z >= chest_z:
        return {"chest": 1.0}
    if co.z >= spine_z:
        t = (co.z - spine_z) / (chest_z - spine_z)
        return {"chest": t, "spine": 1 - t}
    if co.z >= hip_z:
        return {"hips": 1.0}
    leg = 0.9 * min((hip_z - co.z) / (hip_z - knee_z), 1.0)
    shin = min(max((knee_z - co.z) / (knee_z - ankle_z), 0.0), 1.0)
    left = min(max(0.5 + co.x / (2 * hip_half), 0.0), 1.0)
    weights = {"hips": 1 - leg}
    for side, share in (("L", left), ("R", 1 - left)):
        weights[f"thigh.{side}"] = leg * share * (1 - shin)
        weights[f"shin.{side}"] = leg * share * shin
    return weights


def build_robot(path: Path) -> tuple[Path, str]:
    c = Character("Robot", {"legs": (1.0, 1.0, 0.8), "feet": (1.5, 1.5, 1.0), "hips": (1.6, 1.0, 1.0),
                            "torso": (1.45, 1.3, 1.0), "shoulders": (1.8, 1.0, 1.0), "arms": uniform(1.1),
                            "hands": uniform(1.5), "neck": (1.0, 1.0, 0.4), "head": uniform(1.6)})
    plate, dark, red, gold, visor, glow, joint = ("#8c9bb0", "#3c4657", "#c8382c", "#f0c04a", "#151a22",
                                                  "#58f0ff", "#5a6578")
    r = 0.575 * c.length("head")
    head = c.at("head", 0.42)
    helmet = (Part().box(plate, head + Vector((0, 0, r * 0.1)), (r * 2.1, r * 2.0, r * 2.1), bevel=r * 0.35)
              .box(visor, head + Vector((0, -r * 0.98, r * 0.05)), (r * 1.7, r * 0.15, r * 0.6), bevel=r * 0.06)
              .box(red, head + Vector((0, r * 0.15, r * 1.2)), (r * 0.25, r * 1.7, r * 0.5), bevel=r * 0.1))  # crest
    for side, sign in SIDES:
        helmet.sphere(glow, c.tail(f"eye.{side}") - Vector((0, r * 0.3, 0)), (r * 0.2, r * 0.1, r * 0.14), detail=1)
        ear = c.tail(f"ear.{side}")  # ear bolts
        helmet.cylinder(gold, ear, ear + Vector((sign * r * 0.25, 0, 0)), r * 0.3, segments=8)
    c.attach("head", "helmet", helmet)
    c.attach("neck", "neck", Part().cylinder(dark, c.head("neck") - Vector((0, 0, r * 0.2)),
                                             c.tail("neck") + Vector((0, 0, r * 0.2)), r * 0.45, segments=8))

    shoulder_half, hip_half = abs(c.tail("shoulder.L").x), abs(c.head("thigh.L").x)
    chest, depth = c.at("chest", 0.5), shoulder_half * 0.9
    core = chest - Vector((0, depth * 0.55, 0))  # a glowing core in a gold disc on the chest plate
    c.attach("chest", "chest", Part().box(plate, chest, (shoulder_half * 1.75, depth, c.length("chest") * 1.35),
                                          bevel=shoulder_half * 0.12)
             .cylinder(gold, chest - Vector((0, depth * 0.45, 0)), core, shoulder_half * 0.25, segments=16)
             .sphere(glow, core, (shoulder_half * 0.14, shoulder_half * 0.08, shoulder_half * 0.14)))
    c.attach("spine", "abdomen", Part().box(dark, c.at("spine", 0.45),
                                            (shoulder_half * 1.2, depth * 0.8, c.length("spine") * 1.1),
                                            bevel=shoulder_half * 0.08))
    pelvis = c.at("hips", 0.3)
    c.attach("hips", "pelvis", Part().box(plate, pelvis, (hip_half * 3.2, depth * 0.85, c.length("hips") * 1.6),
                                          bevel=hip_half * 0.2)
             .box(gold, pelvis - Vector((0, depth * 0.43, 0)), (hip_half * 0.8, hip_half * 0.2, c.length("hips")),
                  bevel=hip_half * 0.05))

    limb = r * 0.3
    for side, _ in SIDES:
        shoulder, upper, fore, hand, thigh, shin, foot = limb_bones(side)
        guard = c.tail(shoulder) + Vector((sign * limb * 0.3, 0, 0))  # domed shoulder guards with a gold rim
        c.attach(shoulder, f"pauldron.{side}",
                 Part().sphere(red, guard, (limb * 2.4, limb * 2.2, limb * 2.0), detail=3, keep=above(-0.25))
                 .torus(gold, guard - Vector((0, 0, limb * 0.45)), Vector((0, 0, 1)), limb * 2.3, limb * 0.25))
        c.attach(upper, upper, Part().cylinder(dark, c.head(upper), c.tail(upper), limb, segments=8))
        elbow, wrist = c.head(fore), c.tail(fore)
        c.attach(fore, fore, Part().sphere(joint, elbow, (limb * 1.25,) * 3)
                 .torus(gold, elbow, wrist - elbow, limb * 1.15, limb * 0.3)
                 .cylinder(plate, c.at(fore, 0.2), wrist, limb * 1.2, limb * 1.6, segments=8))
        c.attach(hand, hand, Part().box(dark, c.at(hand, 0.45), (limb * 2.2, limb * 2.2, limb * 2.6), bevel=limb * 0.4))
        knee, ankle = c.head(shin), c.head(foot)
        c.attach(thigh, thigh, Part().cylinder(dark, c.head(thigh), knee, limb * 1.3, limb * 1.15, segments=8))
        c.attach(shin, shin, Part().sphere(joint, knee, (limb * 1.4,) * 3)
                 .torus(gold, knee, ankle - knee, limb * 1.3, limb * 0.3)
                 .box(plate, c.at(shin, 0.55), (limb * 2.7, limb * 2.9, c.length(shin) * 0.85), bevel=limb * 0.4))
        c.attach(foot, foot, Part().box(plate, *sole_block(ankle, limb * 3.2, limb * 1.4, limb * 3.0, limb),
                                        bevel=limb * 0.5))

    # A round shield on the outside of the left forearm.
    centre = c.at("forearm.L", 0.5) + Vector((limb * 2.2, 0, 0))
    radius = c.length("forearm.L") * 0.65
    c.attach("forearm.L", "shield", Part().cylinder(red, centre, centre + Vector((limb * 0.6, 0, 0)), radius,
                                                    segments=24)
             .torus(gold, centre + Vector((limb * 0.4, 0, 0)), Vector((1, 0, 0)), radius, limb * 0.35, rings=32)
             .sphere(gold, centre + Vector((limb * 0.7, 0, 0)), (limb * 0.9,) * 3))
    return c.save(path)


BUILDERS = {"dwarf": build_dwarf, "elf": build_elf, "robot": build_robot}


def build_hand_built_characters(out_dir: Path, names: Sequence[str] = tuple(BUILDERS)) -> list[tuple[Path, str]]:
    """Save each character as out_dir/<name>.blend; returns (blend path, armature name) pairs."""
    return [BUILDERS[name](Path(out_dir) / f"{name}.blend") for name in names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the hand-built test characters and render them as one "
                                                 "dataset (OUT_DIR/blends, OUT_DIR/dataset).")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--size", type=int, default=128, help="square render size in pixels")
    parser.add_argument("--directions", type=int, default=8, help="camera directions around each character")
    args = parser.parse_args(argv)
    from blender_addon.cli import main as blender_addon_main

    for blend, armature in build_hand_built_characters(args.out / "blends"):
        code = blender_addon_main(["dataset", "--blend", str(blend), "--armature", armature,
                                   "--out", str(args.out / "dataset"), "--size", str(args.size),
                                   "--directions", str(args.directions)])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
