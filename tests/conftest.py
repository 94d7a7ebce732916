"""Shared fixtures: the golden data copied from the reference implementation, and a loaded tiny pipeline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MOORE_TINY = FIXTURES / "moore-tiny"
TINY_WEIGHTS = MOORE_TINY / "pretrained_weights"
DWPOSE_DRAW = FIXTURES / "dwpose-draw"

# Blender's module writes user resources into the home folder unless told otherwise.
os.environ.setdefault("BLENDER_USER_RESOURCES", str(Path(__file__).parent / ".blender_user"))
# Nothing in the tests may touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def run_settings() -> dict:
    return json.loads((MOORE_TINY / "run.json").read_text())


@pytest.fixture(scope="session")
def reference_image():
    from PIL import Image

    return Image.open(MOORE_TINY / "inputs" / "ref.png").convert("RGB")


@pytest.fixture(scope="session")
def pose_images():
    from PIL import Image

    return [Image.open(MOORE_TINY / "inputs" / f"pose_{i:02d}.png").convert("RGB") for i in range(4)]


@pytest.fixture(scope="session")
def trace():
    import torch

    return torch.load(MOORE_TINY / "expected" / "trace.pt", weights_only=False)


@pytest.fixture(scope="session")
def trace_ctx():
    import torch

    return torch.load(MOORE_TINY / "expected" / "trace_ctx.pt", weights_only=False)


@pytest.fixture(scope="session")
def pipe():
    from spritediff_core import SpriteSheetPipeline

    return SpriteSheetPipeline.from_pretrained(TINY_WEIGHTS, device="cpu", dtype="fp32")


@pytest.fixture()
def tiny_weights_copy(tmp_path) -> Path:
    """A writable copy of the tiny weights folder, for tests that break it on purpose."""
    import shutil

    target = tmp_path / "pretrained_weights"
    shutil.copytree(TINY_WEIGHTS, target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target
