"""The built extension zip, installed into Blender's bpy module and driven headless.

Builds dist/spritediff-<version>.zip with Blender's own tool, installs it with
`extensions.package_install_files`, enables it, and runs Preview Poses and Generate Sprites with the tiny
fixture model; drives the job's poll loop and cancels it; checks errors leave the scene unchanged.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402
from conftest import MOORE_TINY, TINY_WEIGHTS  # noqa: E402

MODULE = "bl_ext.user_default.spritediff"
# The Blender 4.5 LTS environment has no torch: there these tests check installing, registering, the UI
# and poses; generation runs where torch is installed.
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
REFERENCE = MOORE_TINY / "inputs" / "ref.png"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def extension_zip():
    sys.path.insert(0, str(Path(__file__).parent.parent))
    import build

    return build.build_extension(Path(sys.executable))


@pytest.fixture(scope="module")
def ext(extension_zip):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.extensions.package_install_files(filepath=str(extension_zip), repo="user_default",
                                                      enable_on_install=True)
    assert result == {"FINISHED"}
    assert MODULE in bpy.context.preferences.addons
    import importlib

    importlib.import_module(f"{MODULE}.rig_builder")  # the tests build scenes with the installed copy
    yield sys.modules[MODULE]
    addon_utils.disable(MODULE, default_set=True)
    shutil.rmtree(Path(bpy.utils.user_resource("EXTENSIONS")) / "user_default" / "spritediff", ignore_errors=True)


@pytest.fixture()
def prefs(ext):
    preferences = bpy.context.preferences.addons[MODULE].preferences
    preferences.weights_dir = str(TINY_WEIGHTS)
    preferences.device, preferences.dtype = "cpu", "fp32"
    return preferences


@pytest.fixture()
def scene(ext, prefs, tmp_path):
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    armature, actions, camera = ext.rig_builder.build_character_scene(scene)
    settings = scene.spritediff
    settings.armature, settings.action, settings.camera = armature, actions["walk"], camera
    settings.frame_mode, settings.frame_count = "COUNT", 8
    settings.reference_path = str(REFERENCE)
    settings.width = settings.height = 64
    settings.num_inference_steps = 2
    settings.output_dir = str(tmp_path / "sprites")
    return scene


def snapshot(scene):
    """What a failed or cancelled job must not change."""
    return {
        "objects": sorted(o.name for o in bpy.data.objects),
        "images": sorted(i.name for i in bpy.data.images),
        "meshes": sorted(m.name for m in bpy.data.meshes),
        "materials": sorted(m.name for m in bpy.data.materials),
        "frame": scene.frame_current,
        "action": scene.spritediff.armature.animation_data.action if scene.spritediff.armature
        and scene.spritediff.armature.animation_data else None,
        "pose": [tuple(b.rotation_euler) for b in scene.spritediff.armature.pose.bones]
        if scene.spritediff.armature else None,
    }


def test_zip_holds_one_package_with_core_and_rigs(extension_zip):
    import zipfile

    names = zipfile.ZipFile(extension_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "spritediff_core/pipeline.py" in names and "rigs/presets/walk.json" in names
    assert not [n for n in names if n.endswith((".pyc", "demo.py"))]
    bundled = (ROOT / "spritediff_core" / "pretrained" / "spritediff-mini" / "spritediff.json").is_file()
    assert ("spritediff_core/pretrained/spritediff-mini/spritediff.json" in names) == bundled  # travels along


def test_the_version_has_one_source(extension_zip):
    import importlib.metadata
    import tomllib
    import zipfile

    import spritediff_core

    manifest = tomllib.loads(zipfile.ZipFile(extension_zip).read("blender_manifest.toml").decode())
    assert manifest["version"] == spritediff_core.__version__
    try:  # the installed package's metadata (the Blender 4.5 environment runs the checkout uninstalled)
        assert importlib.metadata.version("spritediff") == spritediff_core.__version__
    except importlib.metadata.PackageNotFoundError:
        pass
    assert extension_zip.name == f"spritediff-{spritediff_core.__version__}.zip"


def test_registered_ui(ext):
    assert hasattr(bpy.types.Scene, "spritediff")
    assert hasattr(bpy.types, "VIEW3D_PT_spritediff")
    assert bpy.types.VIEW3D_PT_spritediff.bl_category == "Sprites"
    for name in ("generate", "cancel", "preview_poses", "install_dependencies"):
        assert hasattr(bpy.ops.spritediff, name)
    vendored = sys.modules[f"{MODULE}.generation"].staged_writes.__name__
    assert vendored == MODULE + ".spritediff_core.staged_writes"


def test_installing_packages_honours_blenders_online_access(ext, prefs):
    prefs.wheels_dir = ""
    system = bpy.context.preferences.system
    allowed = system.use_online_access
    system.use_online_access = False
    try:
        with pytest.raises(RuntimeError, match="Online access is off"):
            bpy.ops.spritediff.install_dependencies()
    finally:
        system.use_online_access = allowed


def test_the_installer_pins_every_runtime_package_as_requirements_txt_does(ext):
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    installed = dict(requirement.split("==") for _, requirement in sys.modules[f"{MODULE}.dependencies"].PACKAGES)
    assert {name: pins.get(name) for name in installed} == installed
    needed = {"torch", "diffusers", "transformers", "safetensors", "accelerate", "pillow", "opencv-python-headless",
              "pyyaml", "tqdm", "rectpack"}  # what spritediff_core imports at run time
    assert needed <= set(installed)


def test_every_module_the_add_on_imports_ships_with_it(extension_zip):
    """The add-on's imports of its own modules and of the core (rewritten relative in the zip) all land on a
    module in the zip."""
    import ast
    import zipfile

    archive = zipfile.ZipFile(extension_zip)
    names = set(archive.namelist())
    add_on = [n for n in names if "/" not in n and n.endswith(".py")]
    used = set()
    for name in add_on:
        for node in ast.walk(ast.parse(archive.read(name))):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "spritediff_core" for a in node.names), name
            if isinstance(node, ast.ImportFrom) and node.level == 1 and (node.module or "").split(".")[0] != \
                    "spritediff_core":  # the add-on's own modules (the demo, a repository tool, is left out)
                used |= {f"{a.name}.py" for a in node.names} if node.module is None else {f"{node.module}.py"}
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "spritediff_core":
                assert node.level == 1, f"{name}: absolute import of the core left in the extension"
                module = node.module.replace(".", "/")
                if node.module == "spritediff_core":  # `from .spritediff_core import drawing, rig`
                    used |= {f"{module}/{a.name}.py" for a in node.names}
                else:
                    used.add(f"{module}.py")
    assert "spritediff_core/pipeline.py" in used and "spritediff_core/drawing.py" in used
    assert not sorted(used - names)


def test_reference_as_camera_background(scene):
    settings = scene.spritediff
    settings.camera_background = True
    camera = settings.camera.data
    assert camera.show_background_images
    assert [b.image.filepath for b in camera.background_images] == [str(REFERENCE)]
    settings.camera_background = False
    assert not camera.show_background_images


def test_preview_poses(scene, tmp_path):
    assert bpy.ops.spritediff.preview_poses() == {"FINISHED"}
    image = bpy.data.images["walk_poses"]
    assert image.source == "SEQUENCE"
    assert len(list((tmp_path / "sprites" / "pose_previews" / "walk").glob("pose_*.png"))) == 8


@needs_torch
def test_generate_sprites_headless(scene, tmp_path):
    scene.spritediff.preview_plane = True
    assert bpy.ops.spritediff.preview_poses() == {"FINISHED"}  # its files must not block the generation
    assert bpy.ops.spritediff.generate() == {"FINISHED"}
    sequence, atlas = bpy.data.images["walk_frames"], bpy.data.images["walk_atlas"]
    assert sequence.source == "SEQUENCE" and Path(sequence.filepath).name == "frame_0000.png"
    assert atlas.packed_file is not None and 0 < atlas.size[0] <= 512
    record = json.loads(atlas["spritediff"])
    assert record["settings"]["sampling"]["seed"] == 1234 and record["settings"]["sampling"]["num_inference_steps"] == 2
    assert "denoising_unet.pth" in record["weights"]["files"]
    assert sequence["spritediff_frames"] == 8 and sequence["spritediff_loop"] is True
    assert "walk_preview" in bpy.data.objects
    assert tuple(bpy.data.images["spritediff_preview"].size) == (64, 64)  # the live per-frame preview
    assert scene.spritediff.status.startswith("done")
    frames = sorted((tmp_path / "sprites" / "walk" / "frames").glob("frame_*.png"))
    assert len(frames) == 8

    atlas_size = tuple(atlas.size)
    saved = tmp_path / "result.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(saved))
    shutil.rmtree(tmp_path / "sprites")  # the packed atlas must not need the file any more
    bpy.ops.wm.open_mainfile(filepath=str(saved))
    reloaded = bpy.data.images["walk_atlas"]
    assert reloaded.packed_file is not None and tuple(reloaded.size) == tuple(atlas_size)
    pixels = list(reloaded.pixels[:4000])
    assert any(value > 0 for value in pixels)
    assert json.loads(reloaded["spritediff"])["animation"] == "walk"


@needs_torch
@pytest.mark.skipif(not (ROOT / "spritediff_core" / "pretrained" / "spritediff-mini").is_dir(),
                    reason="spritediff-mini is not bundled yet (python3 build.py train-mini --install)")
def test_without_a_weights_folder_the_bundled_mini_runs_at_its_native_size(scene, prefs):
    prefs.weights_dir = ""
    scene.spritediff.width = scene.spritediff.height = 0  # the model's native size
    assert bpy.ops.spritediff.generate() == {"FINISHED"}
    record = json.loads(bpy.data.images["walk_atlas"]["spritediff"])
    assert record["settings"]["sampling"]["width"] == record["settings"]["sampling"]["height"] == 64
    assert Path(record["scene"]["model"]).name == "spritediff-mini"
    assert "denoising_unet.safetensors" in record["weights"]["files"]


@needs_torch
def test_job_poll_loop_and_cancel_leave_the_scene_unchanged(ext, scene):
    scene.spritediff.num_inference_steps = 300
    before = snapshot(scene)
    runner = ext.operators.start_generation(bpy.context)
    runner.job.start()
    deadline = time.monotonic() + 120
    while runner.job.poll().step < 1:  # wait for the first denoising step (the model loads first)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert runner.poll() == "running" and 0 < scene.spritediff.progress < 1
    assert scene.spritediff.running
    assert bpy.ops.spritediff.cancel() == {"FINISHED"}
    while (state := runner.poll()) == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state == "cancelled" and runner.job.poll().step < 10
    assert not scene.spritediff.running and scene.spritediff.status == "cancelled"
    assert snapshot(scene) == before


def run_failing(ext, scene, capfd, message):
    """In background mode an operator's ERROR report raises RuntimeError carrying the message."""
    before = snapshot(scene)
    with pytest.raises(RuntimeError) as error:
        bpy.ops.spritediff.generate()
    assert message in str(error.value)
    assert "Traceback" not in str(error.value)
    assert snapshot(scene) == before


@needs_torch
def test_error_no_armature_selected(ext, prefs, capfd):
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    ext.rig_builder.add_camera(scene, "side")
    run_failing(ext, scene, capfd, "no armature selected")


@needs_torch
def test_error_no_camera(ext, scene, capfd):
    scene.spritediff.camera = None
    bpy.data.objects.remove(bpy.data.objects["Camera_side"])
    run_failing(ext, scene, capfd, "has no camera")


@needs_torch
def test_error_the_camera_sees_no_keypoint(ext, scene, capfd):
    scene.spritediff.auto_frame = False  # the camera frame as it is
    scene.spritediff.armature.location.z += 1000.0  # far above the frame
    run_failing(ext, scene, capfd, "no keypoint of the armature is visible in any frame")


@needs_torch
def test_an_output_folder_with_other_files_is_refused_before_generating(ext, scene, tmp_path, capfd):
    folder = tmp_path / "sprites" / "walk"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    run_failing(ext, scene, capfd, "notes.txt")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"] and (folder / "notes.txt").read_text() == "mine"


@needs_torch
def test_error_missing_weights_folder(ext, scene, prefs, tmp_path, capfd):
    prefs.weights_dir = str(tmp_path / "no-weights")
    run_failing(ext, scene, capfd, "does not exist")


@needs_torch
def broken_weights(tmp_path: Path) -> Path:
    """The tiny weights with one tensor of the wrong shape."""
    import torch

    broken = tmp_path / "weights"
    shutil.copytree(TINY_WEIGHTS, broken)
    for path in broken.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    state = torch.load(broken / "pose_guider.pth", weights_only=True)
    state["conv_in.weight"] = torch.zeros(4, 3, 1, 1)
    torch.save(state, broken / "pose_guider.pth")
    return broken


@needs_torch
def test_error_weights_with_wrong_shapes(ext, scene, prefs, tmp_path, capfd):
    prefs.weights_dir = str(broken_weights(tmp_path))
    run_failing(ext, scene, capfd, "(4, 3, 1, 1)")


@needs_torch
def test_error_unreadable_reference(ext, scene, tmp_path, capfd):
    bad = tmp_path / "ref.png"
    bad.write_text("not an image")
    scene.spritediff.reference_path = str(bad)
    run_failing(ext, scene, capfd, "not a readable image")


def test_every_setting_reaches_every_add_on_front_end_with_the_same_default(ext, scene, prefs):
    """Parity: each field of the core's settings is a panel or preferences property, an add-on CLI flag and a
    batch key of the same name, with the same default and range, and each maps onto that field."""
    import importlib
    from dataclasses import fields

    core = importlib.import_module(f"{MODULE}.spritediff_core.settings")  # the copy the extension ships
    cli, properties = importlib.import_module(f"{MODULE}.cli"), importlib.import_module(f"{MODULE}.properties")
    from test_settings import other_value

    defaults = core.GenerationSettings()
    parser = cli.build_parser()
    required = ["generate", "--reference", "r.png", "--out", "o"]
    assert cli.options_from_args(parser.parse_args(required)).settings == defaults
    # Frames: by default the Action's own, from the panel as from the command line.
    assert scene.spritediff.bl_rna.properties["frame_mode"].default == "ACTION"
    from_cli = cli.options_from_args(parser.parse_args(required))
    assert from_cli.frames is None and from_cli.frame_range is None
    for concern, kind in core.CONCERNS.items():
        owner = prefs if concern == "runtime" else scene.spritediff
        for spec in fields(kind):
            rna = owner.bl_rna.properties[spec.name]
            assert rna.default == pytest.approx(spec.default), spec.name
            if spec.metadata["choices"]:
                assert [item.identifier for item in rna.enum_items] == list(spec.metadata["choices"])
            if spec.metadata["minimum"] is not None:
                assert (rna.hard_min, rna.hard_max) == pytest.approx((spec.metadata["minimum"],
                                                                      spec.metadata["maximum"])), spec.name
            value = other_value(spec)
            original = getattr(owner, spec.name)
            setattr(owner, spec.name, value)
            try:
                from_panel = properties.options_from_settings(scene.spritediff, prefs).settings
            finally:
                setattr(owner, spec.name, original)
            assert getattr(getattr(from_panel, concern), spec.name) == pytest.approx(value), spec.name
            flag = [core.flag_of(spec.name) if value else "--no-" + spec.name.replace("_", "-")] \
                if isinstance(value, bool) else [core.flag_of(spec.name), str(value)]
            from_cli = cli.options_from_args(parser.parse_args(required + flag)).settings
            assert getattr(getattr(from_cli, concern), spec.name) == value, spec.name
            from_job = cli.options_from_job({"model": "", "output_dir": "o", spec.name: value}, "job").settings
            assert getattr(getattr(from_job, concern), spec.name) == value, spec.name


@needs_torch
def test_low_memory_preferences_give_the_same_sprites(ext, scene, prefs, tmp_path):
    import numpy as np
    from PIL import Image

    settings = scene.spritediff
    settings.action, settings.frame_count = bpy.data.actions["Character_attack"], 4
    settings.output_dir = str(tmp_path / "plain")
    assert bpy.ops.spritediff.generate() == {"FINISHED"}
    prefs.sequential_guidance, prefs.attention_chunk_size, prefs.decode_chunk_size = True, 2, 1
    try:
        settings.output_dir = str(tmp_path / "lean")
        assert bpy.ops.spritediff.generate() == {"FINISHED"}
    finally:
        prefs.sequential_guidance, prefs.attention_chunk_size, prefs.decode_chunk_size = False, 0, 0
    for index in range(4):
        name = f"attack/frames/frame_{index:04d}.png"
        plain = np.asarray(Image.open(tmp_path / "plain" / name)).astype(int)
        lean = np.asarray(Image.open(tmp_path / "lean" / name)).astype(int)
        assert np.abs(plain - lean).max() <= 1


@needs_torch
def test_reference_from_a_blender_image(ext, scene, tmp_path):
    image = bpy.data.images.load(str(REFERENCE))
    settings = scene.spritediff
    settings.reference_source, settings.reference_image = "IMAGE", image
    settings.action = bpy.data.actions["Character_idle"]
    settings.frame_count = 4
    assert bpy.ops.spritediff.generate() == {"FINISHED"}
    assert bpy.data.images["idle_atlas"].packed_file is not None


# ---------------------------------------------------------------- headless commands
@pytest.fixture()
def blend_file(scene, tmp_path):
    path = tmp_path / "character.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def generate_args(blend, out, **changes):
    args = {"--blend": str(blend), "--action": "Character_jump", "--model": str(TINY_WEIGHTS),
            "--reference": str(REFERENCE), "--width": "64", "--height": "64", "--num-inference-steps": "2",
            "--out": str(out)}
    args.update(changes)
    return [part for key, value in args.items() for part in (key, value)]


@needs_torch
def test_cli_failures_without_armature_or_camera(ext, tmp_path, capsys):
    bpy.ops.wm.read_homefile(use_empty=True)
    path = tmp_path / "empty.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    args = ["generate", "--blend", str(path), "--model", str(TINY_WEIGHTS), "--reference", str(REFERENCE),
            "--out", str(tmp_path / "o")]
    assert ext._cli(args) == 1 and "no armature selected" in capsys.readouterr().err
    ext.rig_builder.build_armature(bpy.context.scene)
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    assert ext._cli(args) == 1 and "has no camera" in capsys.readouterr().err


@needs_torch
def test_cli_command_generates_and_saves(ext, blend_file, tmp_path):
    saved = tmp_path / "with_sprites.blend"
    argv = ["generate", *generate_args(blend_file, tmp_path / "cli"), "--save", str(saved)]
    assert ext._cli(argv) == 0  # what `blender --command spritediff generate ...` calls
    assert (tmp_path / "cli" / "jump" / "jump_atlas.png").is_file()
    bpy.ops.wm.open_mainfile(filepath=str(saved))
    assert bpy.data.images["jump_atlas"]["spritediff_loop"] is False
    assert ext._cli(["poses", "--blend", str(blend_file), "--action", "Character_run", "--out",
                     str(tmp_path / "p")]) == 0


@needs_torch
def test_cli_eight_directions_with_mirrors_and_references_per_direction(ext, blend_file, tmp_path):
    from PIL import Image

    side = tmp_path / "side.png"
    Image.open(REFERENCE).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(side)
    out = tmp_path / "knight"
    argv = ["generate", *generate_args(blend_file, out, **{"--reference": f"s={REFERENCE}"}),
            "--reference", f"e={side}", "--frames", "3", "--directions", "8", "--mirror", "e:w,ne:nw"]
    assert ext._cli(argv) == 0
    directions = ("s", "se", "e", "ne", "n", "nw", "w", "sw")
    assert sorted(p.name for p in out.iterdir()) == sorted([f"jump_{d}" for d in directions] + ["sheet"])
    records = {d: json.loads((out / f"jump_{d}" / "frames" / "generation.json").read_text()) for d in directions}
    assert {d: r["direction"] for d, r in records.items()} == {d: d for d in directions}
    # Each direction is generated from the nearest reference (ties: the earlier in compass order).
    assert {d: Path(records[d]["reference"]).name for d in ("s", "se", "e", "ne", "n", "sw")} == {
        "s": "ref.png", "se": "ref.png", "e": "side.png", "ne": "side.png", "n": "side.png", "sw": "ref.png"}
    # Mirrored directions are the generated ones flipped, and say so.
    assert records["w"]["mirrored_from"] == "jump_e" and records["nw"]["mirrored_from"] == "jump_ne"
    assert "mirrored_from" not in records["sw"]
    for index in range(3):
        east = Image.open(out / "jump_e" / "frames" / f"frame_{index:04d}.png")
        west = Image.open(out / "jump_w" / "frames" / f"frame_{index:04d}.png")
        assert np.array_equal(np.asarray(west), np.asarray(east.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    # One sheet of every direction, with an animation per direction and direction-tagged frame names.
    sheet = json.loads((out / "sheet" / "knight_atlas.json").read_text())
    assert sorted(sheet["animations"]) == sorted(f"jump_{d}" for d in directions)
    assert "jump_se_0002" in sheet["frames"] and sheet["animations"]["jump_nw"] == [
        f"jump_nw_{i:04d}" for i in range(3)]
    assert (out / "sheet" / "jump_se.gif").is_file()
    assert bpy.data.images["knight_atlas"]["spritediff_character_sheet"]

    # A second Action into the same folder joins the character's sheet.
    argv = ["generate", *generate_args(blend_file, out, **{"--action": "Character_walk"}), "--frames", "2",
            "--directions", "4"]
    assert ext._cli(argv) == 0
    sheet = json.loads((out / "sheet" / "knight_atlas.json").read_text())
    assert sorted(sheet["animations"]) == sorted([f"jump_{d}" for d in directions] +
                                                 [f"walk_{d}" for d in ("s", "e", "n", "w")])


@needs_torch
@pytest.mark.parametrize("extra, message", [
    (["--directions", "3"], "invalid choice"),
    (["--directions", "4", "--mirror", "ne:nw"], "ne is not one of the 4 directions"),
    (["--mirror", "e:w"], "--mirror needs --directions 4 or 8"),
    (["--directions", "4", "--reference", "x=y.png"], "give one --reference PICTURE"),
    (["--directions", "4", "--mirror", "e:n"], "not the mirror image"),
])
def test_cli_bad_direction_options_fail_before_generating(ext, blend_file, tmp_path, capsys, extra, message):
    out = tmp_path / "o"
    with contextlib.suppress(SystemExit):
        assert ext._cli(["generate", *generate_args(blend_file, out), *extra]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


@needs_torch
def test_panel_generates_four_directions_and_a_character_sheet(ext, scene):
    settings = scene.spritediff
    settings.directions, settings.mirror, settings.frame_count = "4", "e:w", 2
    assert bpy.ops.spritediff.generate() == {"FINISHED"}
    assert {f"walk_{d}_atlas" for d in "senw"} <= set(bpy.data.images.keys())
    assert bpy.data.images["sprites_atlas"]["spritediff_animations"] == [f"walk_{d}" for d in "ensw"]
    record = json.loads(bpy.data.images["walk_w_atlas"]["spritediff"])
    assert record["mirrored_from"] == "walk_e" and record["direction"] == "w"


@needs_torch
def test_panel_pictures_per_direction(ext, scene, tmp_path):
    from PIL import Image

    side = tmp_path / "side.png"
    Image.open(REFERENCE).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(side)
    settings = scene.spritediff
    settings.directions, settings.frame_count = "4", 2
    assert bpy.ops.spritediff.direction_reference_add() == {"FINISHED"}
    assert bpy.ops.spritediff.direction_reference_add() == {"FINISHED"}
    first, second = settings.direction_references
    assert (first.direction, second.direction) == ("s", "e")  # the next free direction each time
    first.path, second.path = str(REFERENCE), str(side)
    assert bpy.ops.spritediff.generate() == {"FINISHED"}
    used = {d: Path(json.loads(bpy.data.images[f"walk_{d}_atlas"]["spritediff"])["reference"]).name for d in "senw"}
    assert used == {"s": "ref.png", "e": "side.png", "n": "side.png", "w": "ref.png"}
    assert bpy.ops.spritediff.direction_reference_remove(index=0) == {"FINISHED"}
    assert [item.direction for item in settings.direction_references] == ["e"]


@needs_torch
@pytest.mark.parametrize("changes, message", [
    ({"--armature": "Nobody"}, "no object named 'Nobody'"),
    ({"--camera": "Character"}, "not a camera"),
    ({"--model": "/nonexistent/weights"}, "does not exist"),
    ({"--reference": "/nonexistent/ref.png"}, "does not exist"),
    ({"--action": "Dance"}, "no Action named"),
    ({"--reference": "UNREADABLE"}, "not a readable image"),
    ({"--model": "BROKEN"}, "(4, 3, 1, 1)"),
])
def test_cli_failures_exit_nonzero(ext, blend_file, tmp_path, capsys, changes, message):
    if changes.get("--reference") == "UNREADABLE":
        changes["--reference"] = str(tmp_path / "bad.png")
        (tmp_path / "bad.png").write_bytes(b"garbage")
    if changes.get("--model") == "BROKEN":
        changes["--model"] = str(broken_weights(tmp_path))
    assert ext._cli(["generate", *generate_args(blend_file, tmp_path / "out", **changes)]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@needs_torch
@pytest.mark.parametrize("blend_content, message", [
    (b"", "is not a .blend file (empty)"),
    (b"\x89PNG\r\n\x1a\n" + b"0" * 64, "is not a .blend file (unknown format)"),
    (b"BLENDER-v500" + b"\0" * 20, "cannot be read, it may be truncated or damaged"),
])
def test_cli_a_broken_blend_is_one_line(ext, tmp_path, capsys, blend_content, message):
    blend = tmp_path / "broken.blend"
    blend.write_bytes(blend_content)
    for command in (["poses", "--blend", str(blend), "--out", str(tmp_path / "p")],
                    ["generate", *generate_args(blend, tmp_path / "out")]):
        assert ext._cli(command) == 1
        err = capsys.readouterr().err
        assert message in err and "unexpected" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.blend"]


@needs_torch
@pytest.mark.parametrize("save, message", [
    ("notes.txt", "ending in .blend"), ("FOLDER.blend", "is a folder"), ("nowhere/x.blend", "does not exist"),
    ("BLEND", "is the input"),
])
def test_cli_save_is_checked_before_generating(ext, blend_file, tmp_path, capsys, save, message):
    (tmp_path / "FOLDER.blend").mkdir()
    save = str(blend_file) if save == "BLEND" else str(tmp_path / save)
    before = blend_file.read_bytes()
    assert ext._cli(["generate", *generate_args(blend_file, tmp_path / "out"), "--save", save]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and blend_file.read_bytes() == before


@needs_torch
@pytest.mark.parametrize("bone_map, message", [
    ("{broken", "is not valid JSON"),
    ("[1, 2]", 'expected an object with a "keypoints" object'),
    ("{}", 'expected an object with a "keypoints" object'),
    ('{"keypoints": {"neck": {"bone": "neck"}, "neck": {"bone": "spine"}}}', "'neck' given more than once"),
    ('{"keypoints": {"neck": {"bone": 5}}}', "keypoint 'neck'"),
    ('{"keypoints": {"neck": {"bone": "neck", "at": "middle"}}}', "at must be"),
    ('{"keypoints": {"neck": {"between": [{"bone": "neck"}]}}}', "between must be two"),
    ('{"keypoints": {"neck": {"bone": "neck"}}, "prefix": "("}', "not a valid regular expression"),
    ('{"keypoints": {"neck": {"bone": "neck"}}, "optional": "nose"}', "optional must be a list"),
])
def test_cli_a_broken_bone_map_names_the_file(ext, blend_file, tmp_path, capsys, bone_map, message):
    path = tmp_path / "my_rig.json"
    path.write_text(bone_map)
    assert ext._cli(["poses", "--blend", str(blend_file), "--action", "Character_run", "--bone-map", str(path),
                     "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "unexpected" not in err, err
    assert not (tmp_path / "p").exists()


@needs_torch
@pytest.mark.parametrize("flags, message", [
    (["--frames", "100000000"], "an animation has 1 to 4096 frames"),
    (["--range", "1-99999999"], "an animation has 1 to 4096 frames"),
    (["--stroke-scale", "nan"], "--stroke-scale"),
])
def test_cli_poses_refuses_sizes_no_animation_has(ext, blend_file, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) if flags[0] == "--stroke-scale" else contextlib.nullcontext():
        assert ext._cli(["poses", "--blend", str(blend_file), "--action", "Character_run", *flags, "--out",
                         str(tmp_path / "p")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


@needs_torch
@pytest.mark.parametrize("characters, message", [
    ('name = "hero"\nactions = ["Character_idle", "Character_idle"]', "would write the same folder"),
    ('name = "../../escape"\nactions = ["Character_idle"]', "must be a plain file name"),
    ('name = "hero"\nactions = ["Character_idle"]\nreference_path = "missing.png"', "missing.png does not exist"),
])
def test_batch_items_are_checked_before_the_first_runs(ext, blend_file, tmp_path, capsys, characters, message):
    job = tmp_path / "job.toml"
    job.write_text(f"""
[defaults]
model = "{TINY_WEIGHTS}"
output_dir = "{tmp_path / 'batch'}"
reference_path = "{REFERENCE}"

[[character]]
name = "first"
blend = "{blend_file.name}"
actions = ["Character_idle"]

[[character]]
blend = "{blend_file.name}"
{characters}
""")
    assert ext._cli(["batch", str(job)]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "batch").exists() and not (tmp_path.parent / "escape").exists()


def write_job(path: Path, blend_file: Path, defaults: str = "num_inference_steps = 2",
              character: str = f'reference_path = "{REFERENCE}"') -> Path:
    """A batch job file: the tiny model at 64 px into <its folder>/batch, one character "hero" from
    `blend_file` with the idle and attack Actions; `defaults` and `character` add keys to each table."""
    path.write_text(f"""
[defaults]
model = "{TINY_WEIGHTS}"
width = 64
height = 64
output_dir = "{path.parent / 'batch'}"
{defaults}

[[character]]
name = "hero"
blend = "{blend_file.name}"
armature = "Character"
actions = ["Character_idle", "Character_attack"]
{character}
""")
    return path


@needs_torch
def test_batch_job_file(ext, blend_file, tmp_path, capsys):
    job = write_job(tmp_path / "job.toml", blend_file)
    assert ext._cli(["batch", str(job)]) == 0
    out = capsys.readouterr().out
    assert "[1/2] hero Character_idle" in out and "[2/2] hero Character_attack" in out
    assert (tmp_path / "batch" / "hero" / "idle" / "idle_atlas.png").is_file()
    assert (tmp_path / "batch" / "hero" / "attack" / "frames" / "frame_0003.png").is_file()
    job.write_text(job.read_text().replace('"Character_attack"', '"Missing"'))
    assert ext._cli(["batch", str(job)]) == 1
    assert "FAILED" in capsys.readouterr().err


@needs_torch
def test_batch_directions_make_one_sheet_per_character(ext, blend_file, tmp_path, capsys):
    job = write_job(tmp_path / "job.toml", blend_file,
                    defaults='num_inference_steps = 1\nframes = 2\ndirections = 4\nmirror = "e:w"',
                    character=f'direction_references = {{ s = "{REFERENCE}", n = "{REFERENCE}" }}')
    assert ext._cli(["batch", str(job)]) == 0
    hero = tmp_path / "batch" / "hero"
    sheet = json.loads((hero / "sheet" / "hero_atlas.json").read_text())
    assert sorted(sheet["animations"]) == sorted(f"{a}_{d}" for a in ("idle", "attack") for d in "senw")
    assert json.loads((hero / "attack_w" / "frames" / "generation.json").read_text())["mirrored_from"] == "attack_e"
    job.write_text(job.read_text().replace("n = ", "north = "))
    assert ext._cli(["batch", str(job)]) == 1
    error = capsys.readouterr().err
    assert "job file" in error and "unknown direction 'north'" in error and "[1/2]" not in error


# ---------------------------------------------------------------- dependency installer
def write_wheel(folder: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal valid pure-Python wheel, written directly (no build backend needed)."""
    import base64
    import hashlib
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    module, dist = name.replace("-", "_"), f"{name.replace('-', '_')}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": module_source,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: spritediff-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


def test_dependency_installer_offline_from_local_wheels(ext, tmp_path):
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "spritediff-fakedep", "1.0", "VALUE = 42\n")
    target = tmp_path / "user" / "site-packages"
    lines = []
    progress = ext.dependencies.install(["spritediff-fakedep==1.0"], target, build="cpu", wheels=wheels,
                                        on_line=lines.append)
    assert progress.ok and lines and progress.log_path.read_text().startswith("$ ")
    assert "--no-index" in progress.log_path.read_text()
    import spritediff_fakedep

    assert spritediff_fakedep.VALUE == 42 and str(target) in sys.path
    import numpy

    assert (target.parent / "constraints.txt").read_text().strip() == f"numpy=={numpy.__version__}"
    failed = ext.dependencies.install(["not-a-package-anywhere"], tmp_path / "user2" / "sp", wheels=wheels)
    assert not failed.ok and failed.log_path.is_file()


def test_missing_packages_reports_what_cannot_be_imported(ext):
    if importlib.util.find_spec("torch") is not None:
        assert ext.dependencies.missing_packages() == []  # this environment has everything
    else:
        assert "torch==2.13.0" in ext.dependencies.missing_packages()
    assert ext.dependencies.missing_packages([("no_such_module_xyz", "xyz==1")]) == ["xyz==1"]
    target = ext.dependencies.site_packages_folder(MODULE)
    assert "extensions" in str(target) and "spritediff" in str(target)


def test_registers_before_the_python_packages_are_installed(tmp_path):
    """A fresh Blender has no OpenCV, Pillow or torch: the add-on must still register, so its preferences
    can offer to install them."""
    code = f"""
import sys
BLOCKED = {{"cv2", "PIL", "torch", "diffusers", "transformers", "safetensors", "rectpack"}}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed")
sys.meta_path.insert(0, Block())
import bpy
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
import blender_addon
blender_addon.register()
assert hasattr(bpy.types.Scene, "spritediff") and hasattr(bpy.types, "VIEW3D_PT_spritediff")
from blender_addon import dependencies
assert "torch==2.13.0" in dependencies.missing_packages()
try:
    bpy.ops.spritediff.preview_poses()
except RuntimeError as error:
    assert "missing Python packages" in str(error) and "Install Packages" in str(error), error
else:
    raise AssertionError("Preview Poses ran without OpenCV")
blender_addon.unregister()
print("REGISTERED")
"""
    env = dict(__import__("os").environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    result = __import__("subprocess").run([sys.executable, "-c", code], capture_output=True, text=True,
                                          timeout=120, env=env)
    assert "REGISTERED" in result.stdout, result.stderr[-3000:]
