"""Real consumers read the outputs: Phaser (in headless Chromium) loads the TexturePacker JSON (hash and
array) and the Aseprite JSON and plays every animation; the frame rectangles and durations it reports must
be ours. (The Godot SpriteFrames check, with a Godot resource parser, is in test_atlas.py.)"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from test_atlas import walk_and_jump, walk_in_four_directions

from spritediff_core.atlas import build_atlas
from spritediff_core.engine_formats import write_atlas
from spritediff_core.settings import PackingSettings

ENGINES = Path(__file__).parent / "engines"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
READY = (ENGINES / "node_modules" / "phaser").is_dir() and Path(CHROMIUM).exists() and shutil.which("node")
if not READY and os.environ.get("CI"):
    raise RuntimeError("CI must run the engine tests: .ci/run installs chromium and tests/engines' npm packages")
pytestmark = pytest.mark.skipif(not READY, reason="needs chromium and `npm ci` in tests/engines (see .ci/run)")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("phaser")
    shutil.copy(ENGINES / "node_modules" / "phaser" / "dist" / "phaser.min.js", root / "phaser.min.js")
    shutil.copy(ENGINES / "phaser_check.html", root / "index.html")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


@pytest.mark.parametrize("make_animations", [walk_and_jump, walk_in_four_directions])
def test_phaser_reads_our_atlases(served, make_animations):
    root, url = served
    animations = make_animations()
    atlas = build_atlas(animations, PackingSettings(padding=2))
    cases = []
    for kind in ("texturepacker-hash", "texturepacker-array", "aseprite"):
        key = kind.replace("texturepacker-", "tp-")
        write_atlas(atlas, root, key, kind)
        cases.append({"key": key, "kind": "aseprite" if kind == "aseprite" else "atlas",
                      "image": f"{key}.png", "json": f"{key}.json"})
    (root / "cases.json").write_text(json.dumps(cases))
    result = subprocess.run(["node", str(ENGINES / "run_phaser.mjs"), url], capture_output=True, text=True,
                            timeout=180, env=dict(os.environ, CHROMIUM_PATH=CHROMIUM))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["errors"] == [], report

    by_name = {f.name: f for f in atlas.frames}
    for case in cases:
        seen = report["atlases"][case["key"]]
        names = [f.name for f in atlas.frames]
        keys = [str(i) for i in range(len(names))] if case["kind"] == "aseprite" else names
        for key, name in zip(keys, names):
            frame, phaser = by_name[name], seen["frames"][key]
            assert (phaser["x"], phaser["y"], phaser["w"], phaser["h"]) == (frame.x, frame.y, frame.width,
                                                                            frame.height), (case["key"], name)
            assert (phaser["sourceW"], phaser["sourceH"]) == (frame.source_width, frame.source_height)
            assert (phaser["offsetX"], phaser["offsetY"]) == (frame.offset_x, frame.offset_y)
        for animation in animations:
            key = animation.name if case["kind"] == "aseprite" else f"{case['key']}:{animation.name}"
            played = seen["animations"][key]
            expected = [str(names.index(f.name)) if case["kind"] == "aseprite" else f.name
                        for f in atlas.frames_of(animation.name)]
            assert played["frames"] == expected and played["shown"] == expected
            frame_ms = round(1000 / animation.fps)
            if case["kind"] == "aseprite":
                assert played["durations"] == [frame_ms] * len(expected)  # per-frame duration from the JSON
                assert played["total"] == frame_ms * len(expected)
            else:
                assert played["msPerFrame"] == pytest.approx(1000 / animation.fps, abs=1)
                assert played["repeat"] == (-1 if animation.loop else 0)
