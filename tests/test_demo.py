"""The main job, `python3 build.py demo`, end to end (it runs `python -m blender_addon.demo`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from spritediff_core.dataset_images import keypoints_on_silhouette
from spritediff_core.matting import OutlineHint, matte_frame
from spritediff_core.poses import PoseSequence
from spritediff_core.weights import DEFAULT_MODEL

ROOT = Path(__file__).parent.parent


def test_demo_writes_poses_sprites_atlases_and_a_blend(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    env.pop("SPRITEDIFF_MODEL_DIR", None)
    result = subprocess.run([sys.executable, "-m", "blender_addon.demo", "--out", str(out)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    bundled = DEFAULT_MODEL.is_dir()
    if bundled:
        assert summary["model_name"] == "spritediff-mini" and summary["size"] == 64
        assert "untrained" not in result.stdout
        assert summary["seconds"] < 300  # the README promises about 2 minutes on a 2-core CPU; slack for CI load
    else:  # a checkout without the bundled model says so and runs the untrained test model
        assert "untrained" in result.stdout and "frames are noise" in result.stdout
    assert [row["animation"] for row in summary["animations"]] == ["idle", "walk", "run", "jump", "attack"]
    assert [row["frames"] for row in summary["animations"]] == [4, 8, 6, 4 + 2, 4]
    for row in summary["animations"]:
        name = row["animation"]
        assert len(list((out / "poses" / name).glob("pose_*.png"))) == row["frames"]
        atlas = json.loads((out / "sprites" / name / f"{name}_atlas.json").read_text())
        assert len(atlas["frames"]) == row["frames"] and atlas["animations"][name]
        gif = Image.open(out / "sprites" / name / f"{name}.gif")
        assert gif.n_frames == row["frames"] and ("loop" in gif.info) == row["loop"]
        if not bundled:
            continue
        # Real sprites, not noise: the character is drawn where the poses put it.
        poses = PoseSequence.load(out / "poses" / name / "poses.json")
        reference = Image.open(summary["reference"])
        for pose, path in zip(poses.frames, sorted((out / "sprites" / name / "frames").glob("frame_*.png"))):
            matted = matte_frame(Image.open(path), OutlineHint.from_reference(reference))
            hits, checked = keypoints_on_silhouette(matted, pose, radius=1)
            assert hits >= 0.75 * checked, (name, path.name, hits, checked)
    assert Image.open(out / "poses_contact_sheet.png").size[0] > 1000
    assert (out / "sprites_contact_sheet.png").is_file() and (out / "demo.blend").is_file()
    check = ("import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]);"
             "names = [n for n in ('idle','walk','run','jump','attack') if bpy.data.images[n + '_atlas'].packed_file];"
             "print('PACKED', len(names), len(bpy.data.actions))")
    opened = subprocess.run([sys.executable, "-c", check, str(out / "demo.blend")], env=env, capture_output=True,
                            text=True, timeout=120)
    assert "PACKED 5 5" in opened.stdout, opened.stderr[-2000:]

    # The walk in 8 directions, in one character sheet whose metadata has an animation per direction.
    directions = ["walk_" + d for d in ("s", "se", "e", "ne", "n", "nw", "w", "sw")]
    assert summary["directions"]["animations"] == directions
    sheet = json.loads((out / "directions" / "sheet" / "directions_atlas.json").read_text())
    assert sorted(sheet["animations"]) == sorted(directions)
    assert all(len(sheet["animations"][name]) == 8 for name in directions)
    assert (out / "directions_contact_sheet.png").is_file()
