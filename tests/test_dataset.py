"""`python -m blender_addon dataset`: the on-disk layout, determinism, keypoints on the rendered silhouettes,
a user's .blend, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from PIL import Image  # noqa: E402

from blender_addon import rig_builder  # noqa: E402
from blender_addon.cli import main as cli_main  # noqa: E402
from spritediff_core.dataset_images import keypoints_on_silhouette  # noqa: E402
from spritediff_core.poses import PoseSequence  # noqa: E402

SIZE = 64


def make_dataset(out: Path, *extra: str, characters: int = 2, seed: int = 3) -> Path:
    code = cli_main(["dataset", "--characters", str(characters), "--out", str(out), "--size", str(SIZE),
                     "--clips", "2", "--seed", str(seed), *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("dataset") / "ds")


def rgba(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGBA" and image.size == (SIZE, SIZE)
        return np.asarray(image)


def check_character(folder: Path) -> dict:
    character = json.loads((folder / "character.json").read_text())
    assert character["name"] == folder.name
    assert set(character["references"]) == {"front", "three_quarter", "side"}
    for relative in character["references"].values():
        picture = rgba(folder / relative)
        assert picture[..., 3].max() == 255 and picture[0, 0, 3] == 0  # a character on a transparent film
    references = PoseSequence.load(folder / "reference" / "poses.json")
    assert len(references) == 3 and references.canvas_size == (SIZE, SIZE)
    assert character["clips"]
    for clip in character["clips"]:
        clip_folder = folder / "clips" / clip
        info = json.loads((clip_folder / "clip.json").read_text())
        assert {"motion", "preset", "variation", "view", "fps", "loop", "frames"} <= set(info)
        assert {"name", "azimuth_deg", "projection"} <= set(info["view"])
        assert clip.endswith(info["view"]["name"])
        sequence = PoseSequence.load(clip_folder / "poses.json")
        assert len(sequence) == info["frames"]
        for index in range(info["frames"]):
            rgba(clip_folder / f"frame_{index:04d}.png")
            assert (clip_folder / f"pose_{index:04d}.png").is_file()
    return character


def test_writes_the_layout(dataset):
    manifest = json.loads((dataset / "dataset.json").read_text())
    assert manifest == {"format": "spritediff-dataset", "version": 1, "size": [SIZE, SIZE], "seed": 3,
                        "source": "procedural", "characters": ["char_0000", "char_0001"]}
    for name in manifest["characters"]:
        check_character(dataset / name)
    assert not [p for p in dataset.iterdir() if p.name.startswith(".")]  # no staging folders left


def test_keypoints_lie_on_the_rendered_silhouettes(dataset):
    hits = checked = 0
    for clip_folder in sorted(dataset.glob("char_*/clips/*")):
        sequence = PoseSequence.load(clip_folder / "poses.json")
        for index, frame in enumerate(sequence.frames):
            with Image.open(clip_folder / f"frame_{index:04d}.png") as image:
                on, seen = keypoints_on_silhouette(image, frame, radius=2, skip=())
            hits, checked = hits + on, checked + seen
    assert checked > 50
    assert hits / checked >= 0.95, f"{hits} of {checked} keypoints on the silhouette"


def test_same_seed_same_characters_and_pixels_other_seed_other_characters(dataset, tmp_path):
    again = make_dataset(tmp_path / "again", characters=1)
    first, second = (json.loads((d / "char_0000" / "character.json").read_text()) for d in (dataset, again))
    assert first == second
    for view in ("front", "side"):
        assert np.array_equal(rgba(dataset / "char_0000" / "reference" / f"{view}.png"),
                              rgba(again / "char_0000" / "reference" / f"{view}.png"))
    other = make_dataset(tmp_path / "other", characters=1, seed=4)
    assert json.loads((other / "char_0000" / "character.json").read_text())["recipe"] != first["recipe"]
    characters = [json.loads((dataset / n / "character.json").read_text())["recipe"]
                  for n in ("char_0000", "char_0001")]
    assert characters[0] != characters[1]


def test_an_existing_dataset_resumes_and_skips_complete_characters(tmp_path, capsys):
    out = make_dataset(tmp_path / "ds", characters=1)
    stamp = (out / "char_0000" / "character.json").stat().st_mtime_ns
    (out / ".char_0001.partial").mkdir()  # what a killed run leaves
    make_dataset(out, characters=2)
    assert "skipped" in capsys.readouterr().out
    assert (out / "char_0000" / "character.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "dataset.json").read_text())["characters"] == ["char_0000", "char_0001"]
    assert not (out / ".char_0001.partial").exists()


def make_blend(path: Path) -> None:
    """The bundled rig, a body and a head parented to bones, one Action."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    armature = rig_builder.build_armature(scene, name="Hero")
    rig_builder.add_preset_action(armature, "walk")
    for bone, size, z in (("chest", (0.4, 0.25, 0.6), 1.2), ("head", (0.25, 0.25, 0.25), 1.65),
                          ("thigh.L", (0.12, 0.12, 0.45), 0.75), ("shin.L", (0.1, 0.1, 0.45), 0.3),
                          ("thigh.R", (0.12, 0.12, 0.45), 0.75), ("shin.R", (0.1, 0.1, 0.45), 0.3),
                          ("upper_arm.L", (0.08, 0.08, 0.3), 1.3), ("forearm.L", (0.08, 0.08, 0.3), 1.05),
                          ("upper_arm.R", (0.08, 0.08, 0.3), 1.3), ("forearm.R", (0.08, 0.08, 0.3), 1.05),
                          ("hand.L", (0.07, 0.07, 0.1), 0.88), ("hand.R", (0.07, 0.07, 0.1), 0.88)):
        x = armature.data.bones[bone].head_local.x
        mesh = bpy.data.meshes.new(bone)
        half = [s / 2 for s in size]
        corners = [(x + sx * half[0], sy * half[1], z + sz * half[2])
                   for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
        faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        mesh.from_pydata(corners, [], faces)
        obj = bpy.data.objects.new(f"part_{bone}", mesh)
        scene.collection.objects.link(obj)
        obj.parent, obj.parent_type, obj.parent_bone = armature, "BONE", bone
        bone_data = armature.data.bones[bone]
        from mathutils import Matrix

        obj.matrix_parent_inverse = (bone_data.matrix_local @ Matrix.Translation((0, bone_data.length, 0))).inverted()
    bpy.ops.wm.save_as_mainfile(filepath=str(path))


def test_blend_mode_renders_the_files_own_character(tmp_path):
    blend = tmp_path / "hero.blend"
    make_blend(blend)
    before = blend.read_bytes()
    out = tmp_path / "ds"
    assert cli_main(["dataset", "--blend", str(blend), "--armature", "Hero", "--out", str(out),
                     "--size", str(SIZE), "--directions", "4"]) == 0
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["source"] == "blend" and manifest["characters"] == ["Hero"]
    character = check_character(out / "Hero")
    assert character["recipe"]["actions"] == ["Hero_walk"]
    assert [c.split("_", 2)[2] for c in character["clips"]] == ["side", "dir_000", "dir_180", "dir_270"]
    assert blend.read_bytes() == before
    stamp = (out / "Hero" / "character.json").stat().st_mtime_ns
    assert cli_main(["dataset", "--blend", str(blend), "--armature", "Hero", "--out", str(out),
                     "--size", str(SIZE), "--directions", "4"]) == 0  # resumed: already complete
    assert (out / "Hero" / "character.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("arguments, message", [
    (["--blend", "{tmp}/missing.blend", "--armature", "Hero"], "does not exist"),
    (["--blend", "{blend}", "--armature", "Nobody"], "no object named 'Nobody'"),
    (["--characters", "1", "--out", "{tmp}/file.txt"], "is a file"),
    (["--characters", "1", "--out", "{tmp}/busy"], "not a spritediff dataset"),
])
def test_bad_input_is_refused_before_rendering(tmp_path, capsys, arguments, message):
    blend = tmp_path / "hero.blend"
    if "{blend}" in arguments:
        make_blend(blend)
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    arguments = [a.format(tmp=tmp_path, blend=blend) for a in arguments]
    if "--out" not in arguments:
        arguments += ["--out", str(tmp_path / "ds")]
    assert cli_main(["dataset", *arguments]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()
