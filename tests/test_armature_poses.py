"""Armature -> keypoints -> camera -> canvas, in Blender's bpy module (run on 5.0 and on 4.5 LTS).

Keep torch out of this file: the 4.5 LTS environment has only bpy and the drawing libraries.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from mathutils import Euler, Vector  # noqa: E402

from blender_addon import armature_reader as reader  # noqa: E402
from blender_addon import rig_builder  # noqa: E402
from blender_addon.cli import main as cli_main  # noqa: E402
from spritediff_core.framing import CameraPoints, auto_framing, camera_framing  # noqa: E402
from spritediff_core.poses import BODY_NAMES, PoseSequence  # noqa: E402
from spritediff_core.rig import ALL_KEYPOINTS, BoneMap, BoneMapError  # noqa: E402

KEY = {name: index for index, name in enumerate(ALL_KEYPOINTS)}
OUR_BODY_BONES = {  # keypoint -> (bone, head/tail) in the bundled rig
    "neck": ("neck", "head"), "right_shoulder": ("upper_arm.R", "head"), "right_elbow": ("forearm.R", "head"),
    "right_wrist": ("hand.R", "head"), "left_shoulder": ("upper_arm.L", "head"),
    "left_elbow": ("forearm.L", "head"), "left_wrist": ("hand.L", "head"), "right_hip": ("thigh.R", "head"),
    "right_knee": ("shin.R", "head"), "right_ankle": ("foot.R", "head"), "left_hip": ("thigh.L", "head"),
    "left_knee": ("shin.L", "head"), "left_ankle": ("foot.L", "head"), "nose": ("nose", "tail"),
    "right_eye": ("eye.R", "tail"), "left_eye": ("eye.L", "tail"), "right_ear": ("ear.R", "tail"),
    "left_ear": ("ear.L", "tail"),
}


@pytest.fixture()
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


@pytest.fixture()
def character(scene):
    armature, actions, camera = rig_builder.build_character_scene(scene)
    return armature, actions, camera


def independent_view(scene, camera, point_world) -> np.ndarray:
    """Normalised camera view of a world point from the camera's own projection matrix (not our code path)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    render = scene.render
    projection = camera.calc_matrix_camera(depsgraph, x=render.resolution_x, y=render.resolution_y,
                                           scale_x=render.pixel_aspect_x, scale_y=render.pixel_aspect_y)
    clip = projection @ camera.matrix_world.inverted() @ Vector((*point_world, 1.0))
    ndc = clip.xyz / clip.w
    depth = -(camera.matrix_world.inverted() @ Vector(point_world)).z
    return np.array([(ndc.x + 1) / 2, (ndc.y + 1) / 2, depth])


def world_bone_point(armature, bone, end):
    pose_bone = armature.pose.bones[bone]
    return np.array(armature.matrix_world @ (pose_bone.head if end == "head" else pose_bone.tail))


def read_current(scene, armature, camera, bone_map=None) -> CameraPoints:
    resolved = reader.resolve_bone_map(armature, bone_map)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    return reader.project_frame(scene, camera.evaluated_get(depsgraph), armature.evaluated_get(depsgraph), resolved)


def set_perspective_camera(camera, location, rotation_deg, lens=35.0, shift=(0.0, 0.0)):
    camera.data.type = "PERSP"
    camera.data.lens = lens
    camera.data.shift_x, camera.data.shift_y = shift
    camera.location = location
    camera.rotation_euler = Euler([math.radians(v) for v in rotation_deg])


@pytest.mark.parametrize("setup", ["ortho", "perspective", "rotated"])
def test_projection_equals_independent_computation(scene, character, setup):
    armature, actions, camera = character
    scene.render.resolution_x, scene.render.resolution_y = 640, 480
    scene.render.pixel_aspect_x = 1.5 if setup == "rotated" else 1.0
    if setup == "perspective":
        set_perspective_camera(camera, (-5.0, 0.3, 1.2), (90, 0, -90), lens=50)
    elif setup == "rotated":
        set_perspective_camera(camera, (-3.5, -3.0, 2.5), (65, 8, -50), lens=28, shift=(0.1, -0.05))
    from blender_addon.actions import assign_action

    assign_action(armature, actions["run"])
    scene.frame_set(3)
    points = read_current(scene, armature, camera)
    for key, (bone, end) in OUR_BODY_BONES.items():
        expected = independent_view(scene, camera, world_bone_point(armature, bone, end))
        np.testing.assert_allclose(points.view[KEY[key]], expected, atol=1e-5, err_msg=key)
        inside = 0 <= expected[0] <= 1 and 0 <= expected[1] <= 1 and expected[2] > 0
        assert points.visible[KEY[key]] == inside, key
    assert points.visible[KEY["neck"]]


def test_points_behind_or_outside_the_camera_are_not_visible(scene, character):
    armature, actions, camera = character
    set_perspective_camera(camera, (-1.0, 0.0, 1.0), (90, 0, -90), lens=200)  # sees a small patch of chest
    points = read_current(scene, armature, camera)
    assert not points.visible[KEY["left_ankle"]] and not points.visible[KEY["nose"]]
    camera.location = (-1.0, 0.0, 1.0)
    camera.rotation_euler = Euler([math.radians(v) for v in (90, 0, 90)])  # looking away from the character
    points = read_current(scene, armature, camera)
    assert (points.view[: len(BODY_NAMES), 2] < 0).all() and not points.visible.any()


def test_left_and_right_come_from_the_bones_not_the_screen(scene, character):
    armature, _, camera = character
    front = rig_builder.add_camera(scene, "front")
    facing = read_current(scene, armature, front)
    # Facing the camera, the character's left shoulder is on the right of the picture.
    assert facing.view[KEY["left_shoulder"], 0] > facing.view[KEY["right_shoulder"], 0]
    armature.rotation_euler = (0.0, 0.0, math.pi)  # turn round: now it faces away
    away = read_current(scene, armature, front)
    assert away.view[KEY["left_shoulder"], 0] < away.view[KEY["right_shoulder"], 0]
    expected = independent_view(scene, front, world_bone_point(armature, "upper_arm.L", "head"))
    np.testing.assert_allclose(away.view[KEY["left_shoulder"]], expected, atol=1e-5)


# ---------------------------------------------------------------- other rigs' naming
RIGIFY_NAMES = {"hips": "DEF-spine", "spine": "DEF-spine.001", "chest": "DEF-spine.003", "neck": "DEF-spine.004",
                "head": "DEF-spine.006"}
GENERIC_NAMES = {"hips": "pelvis", "spine": "spine_01", "chest": "spine_03", "neck": "neck_01", "head": "head"}
MIXAMO_NAMES = {"hips": "Hips", "spine": "Spine", "chest": "Spine2", "neck": "Neck", "head": "Head"}
for side, word in (("L", "Left"), ("R", "Right")):
    RIGIFY_NAMES.update({f"{b}.{side}": f"DEF-{b}.{side}" for b in ("upper_arm", "forearm", "hand", "thigh",
                                                                   "shin", "foot", "shoulder")})
    MIXAMO_NAMES.update({f"upper_arm.{side}": f"{word}Arm", f"forearm.{side}": f"{word}ForeArm",
                         f"hand.{side}": f"{word}Hand", f"thigh.{side}": f"{word}UpLeg",
                         f"shin.{side}": f"{word}Leg", f"foot.{side}": f"{word}Foot",
                         f"shoulder.{side}": f"{word}Shoulder"})
    GENERIC_NAMES.update({f"upper_arm.{side}": f"upperarm_{side.lower()}",
                          f"forearm.{side}": f"lowerarm_{side.lower()}",
                          f"hand.{side}": f"hand_{side.lower()}", f"thigh.{side}": f"thigh_{side.lower()}",
                          f"shin.{side}": f"calf_{side.lower()}", f"foot.{side}": f"foot_{side.lower()}",
                          f"shoulder.{side}": f"clavicle_{side.lower()}"})


def build_renamed_rig(scene, names, prefix="", y_up=False):
    """Our rig's body bones under another naming (no face or finger bones), optionally stored Y-up with the
    object rotated as Blender's FBX importer leaves Mixamo characters."""
    data = rig_builder.load_rig_data()
    bones = []
    for bone in data["bones"]:
        if bone["name"] not in names:
            continue
        head, tail = bone["head"], bone["tail"]
        if y_up:  # armature data in Y-up axes: (x, y, z) world -> (x, z, -y) local
            head, tail = [head[0], head[2], -head[1]], [tail[0], tail[2], -tail[1]]
        parent = bone["parent"] if bone["parent"] in names else None
        bones.append({**bone, "name": prefix + names[bone["name"]], "head": head, "tail": tail,
                      "parent": prefix + names[parent] if parent else None,
                      "connect": bone["connect"] and parent is not None})
    obj = rig_builder.build_armature(scene, "Imported", {**data, "bones": bones})
    del obj["spritediff_bone_map"]  # a foreign rig: no hint, the map must be detected
    if y_up:
        obj.rotation_euler = (math.pi / 2, 0.0, 0.0)
    return obj


def face_points(points):
    return {key: points.view[KEY[key]] for key in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")}


@pytest.mark.parametrize("naming, prefix, expected_map", [
    (RIGIFY_NAMES, "", "rigify"),
    (MIXAMO_NAMES, "mixamorig:", "mixamo"),
    (MIXAMO_NAMES, "mixamorig7:", "mixamo"),
    (GENERIC_NAMES, "", "generic"),
])
def test_foreign_rigs_map_correctly(scene, naming, prefix, expected_map):
    ours = rig_builder.build_armature(scene)
    front = rig_builder.add_camera(scene, "front")
    theirs = build_renamed_rig(scene, naming, prefix, y_up=expected_map == "mixamo")
    assert reader.resolve_bone_map(theirs, None).name == expected_map
    reference = read_current(scene, ours, front)
    mapped = read_current(scene, theirs, front)
    for key, (bone, end) in OUR_BODY_BONES.items():
        if bone in naming and end == "head":
            np.testing.assert_allclose(mapped.view[KEY[key]], reference.view[KEY[key]], atol=1e-5, err_msg=key)
    # Face points come from the head bone: in front of it, eyes above the nose, left on the left.
    face = face_points(mapped)
    assert face["left_eye"][0] > face["nose"][0] > face["right_eye"][0]  # facing the camera: left is screen right
    assert face["left_ear"][0] > face["left_eye"][0] and face["right_ear"][0] < face["right_eye"][0]
    assert face["left_eye"][1] > face["nose"][1] > mapped.view[KEY["neck"], 1]
    depth = independent_view(scene, front, world_bone_point(theirs, prefix + naming["head"], "head"))[2]
    assert face["nose"][2] < depth  # the nose is nearer the camera than the head bone


def test_face_offsets_follow_the_head_bone(scene):
    theirs = build_renamed_rig(scene, MIXAMO_NAMES, "mixamorig:", y_up=True)
    front = rig_builder.add_camera(scene, "front")
    still = face_points(read_current(scene, theirs, front))
    head = theirs.pose.bones["mixamorig:Head"]
    head.rotation_mode = "XYZ"
    head.rotation_euler = (0.0, 0.0, math.radians(40))  # turn the head about its own axis
    turned = face_points(read_current(scene, theirs, front))
    assert abs(turned["nose"][0] - still["nose"][0]) > 0.005


def test_bone_map_that_does_not_fit_names_the_missing_bones(scene):
    naming = dict(RIGIFY_NAMES)
    del naming["forearm.L"], naming["shin.R"]
    obj = build_renamed_rig(scene, naming)
    with pytest.raises(BoneMapError) as error:
        reader.resolve_bone_map(obj, "rigify")
    message = str(error.value)
    assert "left_elbow" in message and "DEF-forearm.L" in message and "DEF-shin.R" in message


def test_neck_falls_back_to_the_shoulders_midpoint(scene):
    naming = {k: v for k, v in MIXAMO_NAMES.items() if k != "neck"}
    naming["head"] = "Head"
    obj = build_renamed_rig(scene, naming, "mixamorig:")
    front = rig_builder.add_camera(scene, "front")
    points = read_current(scene, obj, front)
    midpoint = (points.view[KEY["left_shoulder"]] + points.view[KEY["right_shoulder"]]) / 2
    np.testing.assert_allclose(points.view[KEY["neck"]], midpoint, atol=1e-6)


def test_finger_bones_give_both_hands(scene, character):
    armature, actions, camera = character
    front = rig_builder.add_camera(scene, "front")
    sequence = reader.read_pose_sequences(scene, armature, [actions["idle"]], front, 256, 256)[0]
    frame = sequence.frames[0]
    assert frame.left_hand is not None and (frame.left_hand[:, 2] > 0).all() and (frame.right_hand[:, 2] > 0).all()
    np.testing.assert_allclose(frame.left_hand[0], frame.body[KEY["left_wrist"]])  # the hand's wrist is the body's
    assert frame.left_hand[:, 0].mean() > frame.right_hand[:, 0].mean()  # facing us: left hand on screen right
    plain = reader.read_pose_sequences(scene, armature, [actions["idle"]], front, 256, 256, hands=False)[0]
    assert plain.frames[0].left_hand is None


# ---------------------------------------------------------------- presets, sampling, framing
PRESET_FRAMES = {"idle": 4, "walk": 8, "run": 6, "jump": 6, "attack": 4}


@pytest.mark.parametrize("name", list(PRESET_FRAMES))
def test_presets_have_their_frame_counts_and_cycles_close(scene, character, name):
    armature, actions, camera = character
    resolved = reader.resolve_bone_map(armature, None)
    poses = reader.read_action(scene, armature, actions[name], camera, resolved, reader.FrameSampling())
    assert len(poses.points) == PRESET_FRAMES[name]
    assert poses.loop == (name in ("idle", "walk", "run"))
    start, end = reader.action_frame_range(actions[name])
    step = poses.frames[1] - poses.frames[0]
    if poses.loop:  # frame N+1 would be frame 1 again
        after = reader.read_action(scene, armature, actions[name], camera, resolved,
                                   reader.FrameSampling(frame_range=(int(start + step * len(poses.frames)),) * 2))
        np.testing.assert_allclose(after.points[0].view, poses.points[0].view, atol=1e-6)
        assert poses.frames[-1] < end
    else:
        assert poses.frames[-1] == end
    distinct = {tuple(np.round(p.view[:18, :2].ravel(), 4)) for p in poses.points}
    assert len(distinct) == len(poses.points)  # no repeated frame


def body_metres(scene, character, name):
    """Per frame: the 18 body points in metres (x forward, z up) from the side camera, via framing-free maths."""
    armature, actions, camera = character
    resolved = reader.resolve_bone_map(armature, None)
    poses = reader.read_action(scene, armature, actions[name], camera, resolved, reader.FrameSampling())
    scale = camera.data.ortho_scale
    return [np.stack([(p.view[:18, 0] - 0.5) * scale, (p.view[:18, 1] - 0.5) * scale + camera.location.z], 1)
            for p in poses.points]


def test_presets_look_like_their_names(scene, character):
    idx = {name: i for i, name in enumerate(BODY_NAMES)}
    walk = body_metres(scene, character, "walk")
    stride = [f[idx["left_ankle"], 0] - f[idx["right_ankle"], 0] for f in walk]
    assert max(stride) > 0.3 and min(stride) < -0.3  # the feet take turns in front
    run = body_metres(scene, character, "run")
    run_stride = [abs(f[idx["left_knee"], 0] - f[idx["right_knee"], 0]) for f in run]
    assert max(run_stride) > max(abs(f[idx["left_knee"], 0] - f[idx["right_knee"], 0]) for f in walk)
    assert np.mean([f[idx["neck"], 0] - (f[idx["left_hip"], 0] + f[idx["right_hip"], 0]) / 2 for f in run]) > 0.08
    jump = body_metres(scene, character, "jump")
    ground = min(jump[0][:, 1])
    feet = [min(f[idx["left_ankle"], 1], f[idx["right_ankle"], 1]) for f in jump]
    assert max(feet) - feet[0] > 0.4 and abs(feet[-1] - feet[0]) < 0.02  # leaves the ground, lands again
    assert jump[0][idx["neck"], 1] < jump[1][idx["neck"], 1]  # starts crouched
    attack = body_metres(scene, character, "attack")
    reach = [f[idx["right_wrist"], 0] - f[idx["right_shoulder"], 0] for f in attack]
    assert max(reach) > 0.4 and reach.index(max(reach)) == 1  # the strike frame reaches out in front
    idle = body_metres(scene, character, "idle")
    drift = max(np.abs(f - idle[0]).max() for f in idle)
    assert 0.002 < drift < 0.08 and ground > -0.05  # alive but standing still


def test_frame_sampling_of_a_user_action(scene, character):
    armature, actions, camera = character
    action = actions["walk"]
    del action["spritediff_frames"]
    action.frame_start, action.frame_end = 1, 25
    resolved = reader.resolve_bone_map(armature, None)
    sampled = reader.read_action(scene, armature, action, camera, resolved, reader.FrameSampling(count=8))
    assert sampled.frames == [1 + 3 * i for i in range(8)]
    ranged = reader.read_action(scene, armature, action, camera, resolved, reader.FrameSampling(frame_range=(5, 8)))
    assert ranged.frames == [5, 6, 7, 8]
    one_shot = reader.read_action(scene, armature, action, camera, resolved, reader.FrameSampling(count=5),
                                  loop=False)
    assert one_shot.frames == [1, 7, 13, 19, 25]


def test_auto_framing_is_one_steady_transform_that_keeps_everything_inside(scene, character):
    armature, actions, camera = character
    sequences = reader.read_pose_sequences(scene, armature, [actions["walk"], actions["jump"]], camera, 256, 320)
    resolved = reader.resolve_bone_map(armature, None)
    raw = [reader.read_action(scene, armature, actions[n], camera, resolved, reader.FrameSampling())
           for n in ("walk", "jump")]
    view, canvas = [], []
    for sequence, animation in zip(sequences, raw):
        for frame, points in zip(sequence.frames, animation.points):
            visible = frame.body[:, 2] > 0
            assert visible.all()
            assert (frame.body[:, 0] >= 0).all() and (frame.body[:, 0] < 256).all()
            assert (frame.body[:, 1] >= 0).all() and (frame.body[:, 1] < 320).all()
            view.append(points.view[:18, :2])
            canvas.append(frame.body[:, :2])
    view, canvas = np.concatenate(view), np.concatenate(canvas)
    # canvas = s * (x, 1 - y) + offset for every point of every frame of both animations: one scale, no jumps.
    design = np.concatenate([np.stack([view[:, 0], np.ones(len(view)), np.zeros(len(view))], 1),
                             np.stack([-view[:, 1], np.zeros(len(view)), np.ones(len(view))], 1)])
    solution, residual, *_ = np.linalg.lstsq(design, np.concatenate([canvas[:, 0], canvas[:, 1]]), rcond=None)
    assert np.abs(design @ solution - np.concatenate([canvas[:, 0], canvas[:, 1]])).max() < 1e-6
    assert math.isclose(canvas[:, 1].max(), 0.92 * 320, rel_tol=1e-6)  # the lowest point sits on the ground line


def test_without_auto_framing_the_camera_frame_is_the_canvas(scene, character):
    armature, actions, camera = character
    sequence = reader.read_pose_sequences(scene, armature, [actions["idle"]], camera, 512, 512,
                                          auto_frame=False)[0]
    resolved = reader.resolve_bone_map(armature, None)
    raw = reader.read_action(scene, armature, actions["idle"], camera, resolved, reader.FrameSampling())
    np.testing.assert_allclose(sequence.frames[0].body[:, 0], raw.points[0].view[:18, 0] * 512, atol=1e-6)
    np.testing.assert_allclose(sequence.frames[0].body[:, 1], (1 - raw.points[0].view[:18, 1]) * 512, atol=1e-6)


def test_reading_poses_leaves_the_scene_as_it_was(scene, character):
    armature, actions, camera = character
    from blender_addon.actions import assign_action

    assign_action(armature, actions["idle"])
    scene.frame_set(3)
    armature.pose.bones["head"].rotation_euler = (0.3, 0.0, 0.0)  # a user's unkeyed tweak
    channels = ("location", "rotation_euler", "rotation_quaternion", "scale")

    def snapshot():
        return {b.name: [tuple(getattr(b, c)) for c in channels] for b in armature.pose.bones}

    before = snapshot()
    first = reader.read_pose_sequences(scene, armature, [actions["walk"]], camera, 128, 128)
    reader.read_pose_sequences(scene, armature, [actions["run"], actions["jump"]], camera, 128, 128)
    assert scene.frame_current == 3 and armature.animation_data.action == actions["idle"]
    assert snapshot() == before
    # Reading other Actions in between leaks nothing into the next read.
    again = reader.read_pose_sequences(scene, armature, [actions["walk"]], camera, 128, 128)
    np.testing.assert_array_equal(first[0].frames[2].body, again[0].frames[2].body)


# ---------------------------------------------------------------- headless command
@pytest.fixture()
def blend_file(scene, character, tmp_path):
    path = tmp_path / "character.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def test_poses_command_writes_json_and_images(blend_file, tmp_path):
    out = tmp_path / "walk"
    assert cli_main(["poses", "--blend", str(blend_file), "--armature", "Character", "--action", "Character_walk",
                     "--width", "128", "--height", "160", "--out", str(out)]) == 0
    sequence = PoseSequence.load(out / "poses.json")
    assert len(sequence) == 8 and sequence.loop and sequence.name == "walk" and sequence.canvas_size == (128, 160)
    assert sorted(p.name for p in out.glob("pose_*.png")) == [f"pose_{i:04d}.png" for i in range(8)]
    from PIL import Image

    image = Image.open(out / "pose_0000.png")
    assert image.size == (128, 160) and np.asarray(image).any()
    manifest = json.loads((out / "generation.json").read_text())
    assert manifest["fps"] == 8.0


@pytest.mark.parametrize("args, message", [
    (["--armature", "Nobody"], "no object named 'Nobody'"),
    (["--armature", "Camera_side"], "not an armature"),
    (["--action", "Dance"], "no Action named 'Dance'"),
    (["--camera", "Character"], "not a camera"),
    (["--bone-map", "mixamo"], "does not fit"),
    (["--bone-map", "nonexistent"], "no bone map"),
])
def test_poses_command_errors(blend_file, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    base = ["poses", "--blend", str(blend_file), "--armature", "Character", "--action", "Character_walk",
            "--out", str(out)]
    for flag, value in zip(args[::2], args[1::2]):
        if flag in base:
            base[base.index(flag) + 1] = value
        else:
            base += [flag, value]
    assert cli_main(base) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_poses_command_needs_a_camera_and_an_animation(scene, tmp_path, capsys):
    rig_builder.build_armature(scene)
    path = tmp_path / "bare.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    assert cli_main(["poses", "--blend", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "has no camera" in capsys.readouterr().err
    rig_builder.add_camera(bpy.context.scene, "side")
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    assert cli_main(["poses", "--blend", str(path), "--armature", "Character", "--out", str(tmp_path / "o")]) == 1
    assert "has no animation" in capsys.readouterr().err
    assert cli_main(["poses", "--blend", str(tmp_path / "missing.blend"), "--out", str(tmp_path / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_map_fit_error_is_clear_for_unknown_rigs(scene):
    obj = build_renamed_rig(scene, {"hips": "pelvis_bone", "spine": "torso"})
    with pytest.raises(reader.PoseReadError, match="no known bone map fits"):
        reader.resolve_bone_map(obj, None)


def test_core_framing_rejects_nothing_visible():
    empty = CameraPoints(np.zeros((len(ALL_KEYPOINTS), 3)), np.zeros(len(ALL_KEYPOINTS), dtype=bool))
    with pytest.raises(Exception, match="no keypoint is visible"):
        auto_framing([[empty]], 1.0, 64, 64)
    assert camera_framing(2.0, 100, 100).scale == 50


def test_bundled_maps_load():
    for name in ("spritediff", "rigify", "mixamo", "generic"):
        assert BoneMap.load(name).keypoints


# ---------------------------------------------------------------- directions
def test_eight_directions_face_their_way_with_left_and_right_from_the_bones(scene, character):
    armature, actions, camera = character
    sequences = reader.read_pose_sequences(scene, armature, [actions["walk"], actions["jump"]], camera, 256, 256,
                                           directions=8)
    names = [f"{action}_{d}" for action in ("walk", "jump") for d in ("s", "se", "e", "ne", "n", "nw", "w", "sw")]
    assert [sequence.name for sequence in sequences] == names
    assert {json.dumps(sequence.metadata["framing"]) for sequence in sequences} == {
        json.dumps(sequences[0].metadata["framing"])}  # one framing for every action and direction
    for sequence in sequences:
        assert sequence.metadata["direction"] == sequence.name.split("_")[1]
        for frame in sequence.frames:  # everything seen, inside the canvas
            body = frame.body[frame.body[:, 2] > 0]
            assert ((body[:, :2] >= 0) & (body[:, :2] < 256)).all()
    by_name = {sequence.name: sequence.frames[0].body for sequence in sequences}
    right, left = KEY["right_shoulder"], KEY["left_shoulder"]
    # Facing the viewer, the character's right shoulder is on screen left; seen from behind, on screen right.
    assert by_name["walk_s"][right, 0] < by_name["walk_s"][left, 0] - 5
    assert by_name["walk_n"][right, 0] > by_name["walk_n"][left, 0] + 5
    # Facing screen right (e) or left (w), the nose is ahead of the neck.
    neck, nose = KEY["neck"], KEY["nose"]
    assert by_name["walk_e"][nose, 0] > by_name["walk_e"][neck, 0]
    assert by_name["walk_w"][nose, 0] < by_name["walk_w"][neck, 0]
    # The presets' camera already sees the character facing screen right: e is the camera's own view.
    resolved = reader.resolve_bone_map(armature, None)
    plain = reader.read_action(scene, armature, actions["walk"], camera, resolved, reader.FrameSampling())
    turns = reader.direction_turns(armature, camera, 8)
    turned = reader.read_action_directions(scene, armature, actions["walk"], camera, resolved,
                                           reader.FrameSampling(), turns=turns)
    assert [seen.name for seen in turned] == names[:8]
    np.testing.assert_allclose(turned[2].points[3].view, plain.points[3].view, atol=1e-6)
    # Mirror images: w is e flipped about the root, up to the rig's own asymmetry of motion.
    assert turned[6].points[0].view[:, 2] == pytest.approx(turned[2].points[0].view[:, 2], abs=0.5)


def test_poses_command_writes_one_folder_per_direction(blend_file, tmp_path):
    out = tmp_path / "poses"
    assert cli_main(["poses", "--blend", str(blend_file), "--armature", "Character", "--action", "Character_walk",
                     "--width", "128", "--height", "128", "--directions", "4", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["walk_e", "walk_n", "walk_s", "walk_w"]
    for name in ("walk_s", "walk_e", "walk_n", "walk_w"):
        sequence = PoseSequence.load(out / name / "poses.json")
        assert sequence.name == name and len(sequence) == 8 and sequence.metadata["direction"] == name[5:]
        assert len(list((out / name).glob("pose_*.png"))) == 8
