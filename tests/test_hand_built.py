"""A character built by hand, unlike the dataset generator's (tests/hand_built_characters.py), renders with
`dataset --blend` into the dataset layout, whole, with its keypoints on its silhouette."""

from __future__ import annotations

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from hand_built_characters import build_hand_built_characters  # noqa: E402
from PIL import Image  # noqa: E402
from test_dataset import SIZE, check_character  # noqa: E402

from blender_addon.cli import main as cli_main  # noqa: E402
from spritediff_core.dataset_images import keypoints_on_silhouette  # noqa: E402
from spritediff_core.poses import PoseSequence  # noqa: E402


def test_the_hand_built_elf_renders_whole_with_its_keypoints_on_it(tmp_path):
    # The elf: the thinnest limbs, the tallest hat and a robe skinned to the legs.
    [(blend, armature)] = build_hand_built_characters(tmp_path / "blends", names=["elf"])
    out = tmp_path / "ds"
    assert cli_main(["dataset", "--blend", str(blend), "--armature", armature, "--out", str(out), "--size", str(SIZE),
                     "--directions", "2", "--actions", f"{armature}_walk", f"{armature}_attack"]) == 0

    assert json.loads((out / "dataset.json").read_text())["characters"] == [armature]
    character = check_character(out / armature)  # references, and every clip's frames match its poses
    assert [clip.split("_", 1)[1] for clip in character["clips"]] == [
        f"{motion}_{view}" for motion in ("Elf-walk", "Elf-attack") for view in ("side", "dir_000", "dir_180")]

    references = PoseSequence.load(out / armature / "reference" / "poses.json").frames  # front, three_quarter, side
    pictures = [(out / armature / "reference" / f"{view}.png", frame)
                for view, frame in zip(("front", "three_quarter", "side"), references)]
    for clip in character["clips"]:
        folder = out / armature / "clips" / clip
        pictures += [(folder / f"frame_{index:04d}.png", frame)
                     for index, frame in enumerate(PoseSequence.load(folder / "poses.json").frames)]
    hits = checked = 0
    for path, frame in pictures:
        with Image.open(path) as image:
            on, seen = keypoints_on_silhouette(image, frame, radius=2, skip=())
            alpha = np.asarray(image)[..., 3]
        hits, checked = hits + on, checked + seen
        edges = (alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1])
        assert max(edge.max() for edge in edges) < 128, f"{path.name} of {path.parent.name} is cut off at an edge"
    assert checked > 500
    assert hits / checked >= 0.95, f"{hits} of {checked} keypoints on the silhouette"
