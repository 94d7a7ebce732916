#!/usr/bin/env python3
"""spritediff's one entry point (standard library only).

    python3 build.py test [PYTEST ARGS]   set up .venv (and .venv-bpy45), then ruff and the whole test suite
    python3 build.py demo [--model DIR]   set up .venv, then run the headless demo (the main job)
    python3 build.py extension            build dist/spritediff-<version>.zip (validated by Blender's tool)
    python3 build.py bench [--quick]      speed and memory benchmarks, results under out/bench/
    python3 build.py train-mini [--install|--quick]  remake spritediff-mini from nothing (data, training,
                                          evaluation); --quick: the same at toy sizes

Setting up means: create `.venv` (or refresh it when requirements.txt changed), install the pinned
requirements in one pip command (bpy needs numpy<2, see requirements.txt), install spritediff itself
(editable), and install the Debian libraries bpy needs when they are missing. A second run reuses
everything and takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
# Blender 4.5 LTS in its own environment: the armature/Action code must work on 4.5 and 5.0.
VENV_BPY45 = ROOT / ".venv-bpy45"
REQUIREMENTS_BPY45 = ROOT / "requirements-bpy45.txt"
BPY45_TESTS = ["tests/test_armature_poses.py", "tests/test_extension.py"]
# Shared libraries the PyPI `bpy` module loads at import (libegl1 for Workbench/EEVEE renders), and Chromium.
DEBIAN_PACKAGES = ["libx11-6", "libxrender1", "libxfixes3", "libxi6", "libxkbcommon0", "libxext6", "libsm6",
                   "libgl1", "libegl1",
                   # The engine tests: Phaser reads our atlases in headless Chromium.
                   "chromium"]
ENGINE_TESTS = ROOT / "tests" / "engines"


def log(message: str) -> None:
    print(f"[build] {message}", flush=True)


def run(command: list[str], **kwargs) -> None:
    log(" ".join(str(part) for part in command))
    subprocess.run(command, check=True, **kwargs)


def venv_python(venv_dir: Path = VENV) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def setup_fingerprint(requirements: Path) -> str:
    digest = hashlib.sha256()
    for path in (requirements, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def missing_debian_packages() -> list[str]:
    if not shutil.which("dpkg-query"):
        return []
    missing = []
    for package in DEBIAN_PACKAGES:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
        if "install ok installed" not in status.stdout:
            missing.append(package)
    return missing


def ensure_debian_libraries() -> None:
    missing = missing_debian_packages()
    if not missing:
        return
    prefix = [] if os.geteuid() == 0 else (["sudo"] if shutil.which("sudo") else None)
    if prefix is None:
        sys.exit(f"bpy needs these Debian packages: {' '.join(missing)}; install them as root and run again")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(prefix + ["apt-get", "update"], env=env)
    run(prefix + ["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)


def ensure_engine_test_packages() -> None:
    """Phaser and playwright-core for the engine tests, from tests/engines/package-lock.json."""
    if (ENGINE_TESTS / "node_modules" / ".package-lock.json").exists() and \
            (ENGINE_TESTS / "node_modules" / ".package-lock.json").stat().st_mtime >= \
            (ENGINE_TESTS / "package-lock.json").stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("the engine tests need Node.js and npm (Debian: apt-get install nodejs npm)")
    run([npm, "ci", "--no-audit", "--no-fund"], cwd=ENGINE_TESTS)


def ensure_venv(venv_dir: Path = VENV, requirements: Path = REQUIREMENTS, install_project: bool = True) -> Path:
    """Create or refresh a virtual environment from a pinned requirements file (reused when unchanged)."""
    ensure_debian_libraries()
    fingerprint = setup_fingerprint(requirements)
    python = venv_python(venv_dir)
    stamp = venv_dir / ".spritediff-setup"
    if python.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return python
    if not python.exists():
        log(f"creating {venv_dir.name}")
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    # One pip command for everything pinned: installing opencv or torch later would let pip pull numpy 2.
    run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(requirements)])
    if install_project:
        run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
             "--no-build-isolation", "-e", str(ROOT)])
    stamp.write_text(fingerprint)
    return python


def command_test(args: list[str]) -> int:
    """The linter (ruff, configured in pyproject.toml), the whole suite on Blender 5.0's bpy, then the
    armature/Action tests again on Blender 4.5 LTS."""
    python = ensure_venv()
    ensure_engine_test_packages()
    # Test paths (tests/x.py, tests/x.py::test_y) choose a subset; everything else is a pytest option.
    selected = [arg for arg in args if (ROOT / arg.split("::")[0]).exists()]
    options = [arg for arg in args if arg not in selected]
    env = blender_environment()
    main = subprocess.run([str(python), "-m", "pytest", *(selected or ["tests"]), *options], cwd=ROOT, env=env)
    if selected:  # a chosen subset runs on the main environment only
        return main.returncode
    log("ruff check")
    lint = subprocess.run([str(python), "-m", "ruff", "check", "."], cwd=ROOT)
    log("armature/Action tests on Blender 4.5 LTS")
    python45 = ensure_venv(VENV_BPY45, REQUIREMENTS_BPY45, install_project=False)
    lts = subprocess.run([str(python45), "-m", "pytest", *BPY45_TESTS, *options], cwd=ROOT, env=env)
    return main.returncode or lint.returncode or lts.returncode


def command_demo(args: list[str]) -> int:
    """The headless demo: rig, five preset motions, pose images, sprite frames, a .blend, under out/demo/.
    Options: --model DIR (real weights; or set SPRITEDIFF_MODEL_DIR), --out DIR, --size N, --steps N."""
    python = ensure_venv()
    return subprocess.run([str(python), "-m", "blender_addon.demo", *args], cwd=ROOT,
                          env=blender_environment()).returncode


def blender_environment() -> dict[str, str]:
    """Keep Blender's user resources inside the project rather than in the home folder."""
    return dict(os.environ, BLENDER_USER_RESOURCES=os.environ.get("BLENDER_USER_RESOURCES",
                                                                  str(ROOT / ".blender_user")))


EXTENSION_STAGE = ROOT / "build" / "extension" / "spritediff"
DIST = ROOT / "dist"
# What the extension zip holds: the add-on at its root, with the core and the rig data vendored inside.
ADDON_EXCLUDE = {"__main__.py", "demo.py"}


def blender_ext_tool(python: Path) -> Path:
    """Blender's own extension tool, shipped inside the bpy module of `python`'s environment."""
    pattern = "lib/python*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
    found = sorted(python.parent.parent.glob(pattern))
    if not found:
        sys.exit("blender_ext.py not found in the bpy module of .venv")
    return found[-1]


def project_version() -> str:
    """spritediff_core.__version__, read without importing the core (the one place the version is written)."""
    source = (ROOT / "spritediff_core" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"$', source, re.MULTILINE).group(1)


# The add-on imports the core by its package name (static imports a reader and a linter follow); in the
# extension the core is vendored as a subpackage and Blender wants relative imports: rewritten when staged.
CORE_IMPORT = re.compile(r"^(\s*)from spritediff_core\b", re.MULTILINE)
PLAIN_CORE_IMPORT = re.compile(r"^\s*import spritediff_core\b", re.MULTILINE)


def vendored_imports(source: str, name: str) -> str:
    """`from spritediff_core...` -> `from .spritediff_core...` (the add-on's modules sit at the extension root)."""
    if PLAIN_CORE_IMPORT.search(source):
        sys.exit(f"blender_addon/{name}: write 'from spritediff_core import ...' (the extension rewrites it)")
    return CORE_IMPORT.sub(r"\1from .spritediff_core", source)


def stage_extension() -> Path:
    if EXTENSION_STAGE.exists():
        shutil.rmtree(EXTENSION_STAGE)
    EXTENSION_STAGE.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for path in sorted((ROOT / "blender_addon").glob("*.py")):
        if path.name not in ADDON_EXCLUDE:
            source = vendored_imports(path.read_text(encoding="utf-8"), path.name)
            (EXTENSION_STAGE / path.name).write_text(source, encoding="utf-8")
    shutil.copytree(ROOT / "spritediff_core", EXTENSION_STAGE / "spritediff_core", ignore=ignore)
    shutil.copytree(ROOT / "rigs", EXTENSION_STAGE / "rigs", ignore=ignore)
    manifest = (ROOT / "blender_manifest.toml").read_text(encoding="utf-8")
    manifest, found = re.subn(r"^# version: .*$", f'version = "{project_version()}"', manifest, count=1,
                              flags=re.MULTILINE)
    if not found:
        sys.exit("blender_manifest.toml: the '# version: ...' line the build replaces is missing")
    (EXTENSION_STAGE / "blender_manifest.toml").write_text(manifest, encoding="utf-8")
    shutil.copy2(ROOT / "README.md", EXTENSION_STAGE / "README.md")
    shutil.copy2(REQUIREMENTS, EXTENSION_STAGE / "requirements.txt")  # the installer's pins (dependencies.py)
    return EXTENSION_STAGE


def command_extension(args: list[str]) -> int:
    build_extension(ensure_venv())
    return 0


def build_extension(python: Path) -> Path:
    """dist/spritediff-<version>.zip, validated and built by Blender's own blender_ext.py."""
    tool = blender_ext_tool(python)
    stage = stage_extension()
    run([str(python), str(tool), "validate", str(stage)])
    DIST.mkdir(exist_ok=True)
    zip_path = DIST / f"spritediff-{project_version()}.zip"
    zip_path.unlink(missing_ok=True)
    run([str(python), str(tool), "build", "--source-dir", str(stage), "--output-filepath", str(zip_path)])
    log(f"built {zip_path.relative_to(ROOT)}")
    return zip_path


def command_bench(args: list[str]) -> int:
    """Speed and memory benchmarks (not tests): table and JSON under out/bench/. --quick for a small grid."""
    python = ensure_venv()
    return subprocess.run([str(python), "-m", "benchmarks.bench", *args], cwd=ROOT).returncode


BUNDLED_MINI = ROOT / "spritediff_core" / "pretrained" / "spritediff-mini"
# A stage-1 cosine cycle at batch 64 with bf16 autocast (measured 2.5-2.7 s per step on the 2 cores, fp32 3.3 s):
# once the batch-16 runs had stopped improving the UNet, each such cycle still raised held-out IoU
# (side references: 0.756 -> 0.772 -> 0.781).
BATCH64_CYCLE = ["--steps", "2000", "--batch-size", "64", "--lr", "1e-4", "--warmup-steps", "50",
                 "--train-image-encoder", "--use-ema", "--lr-scheduler", "cosine", "--mixed-precision", "bf16",
                 "--checkpoint-every", "100"]
MOTION_STAGE = ["--steps", "400", "--batch-size", "2", "--frames", "8", "--lr", "1e-4", "--warmup-steps", "20"]
# spritediff-mini's recipe: data, the training runs in order (name, stage, the run it starts from, options),
# evaluation on characters never seen in training. The decoder run repaints the empty background the
# window-trained VAE left grey; the later stage-1 runs go on from the first with EMA and a decaying rate.
MINI_RECIPE = {
    "train_characters": 500, "heldout_characters": 24, "render_size": 128,
    "runs": [
        ("stage0", 0, None, ["--config", "mini", "--steps", "2500", "--batch-size", "16", "--lr", "1e-3",
                             "--warmup-steps", "50"]),
        ("decoder", 0, "stage0", ["--steps", "1000", "--batch-size", "16", "--lr", "2e-4", "--warmup-steps", "20"]),
        ("stage1", 1, "decoder", ["--steps", "4000", "--batch-size", "16", "--lr", "2e-4", "--warmup-steps", "100",
                                  "--train-image-encoder"]),
        ("stage1-ema", 1, "stage1", ["--steps", "3000", "--batch-size", "16", "--lr", "2e-4", "--warmup-steps", "50",
                                     "--train-image-encoder", "--use-ema", "--lr-scheduler", "cosine"]),
        # Stage 1 on from there: the first 1,000 steps of a 6,000-step cosine schedule, then 1,100 steps at batch
        # 128 (the shipped weights ran that run on an H100 in 15 min; on 2 CPU cores it takes hours).
        ("stage1-more", 1, "stage1-ema", ["--steps", "6000", "--stop-at", "1000", "--batch-size", "16", "--lr", "2e-4",
                                          "--warmup-steps", "50", "--train-image-encoder", "--use-ema",
                                          "--lr-scheduler", "cosine", "--checkpoint-every", "250"]),
        ("stage1-large-batch", 1, "stage1-more", ["--steps", "1100", "--batch-size", "128", "--lr", "2e-4",
                                                  "--warmup-steps", "50", "--train-image-encoder", "--use-ema",
                                                  "--lr-scheduler", "cosine", "--mixed-precision", "bf16",
                                                  "--checkpoint-every", "100"]),
        ("stage1-anneal", 1, "stage1-large-batch", BATCH64_CYCLE),
        ("stage2", 2, "stage1-anneal", MOTION_STAGE),
        # A third large-batch cycle (the second at batch 64) from the stage-2 model (its motion modules ride
        # along untouched in stage 1), then stage 2 again on the new spatial layers.
        ("stage1-cycle3", 1, "stage2", BATCH64_CYCLE),
        ("stage2-cycle3", 2, "stage1-cycle3", MOTION_STAGE),
    ],
    "evaluate": [],
}
# The same commands at toy sizes (minutes), to check the recipe end to end: --quick.
QUICK_CYCLE = ["--steps", "2", "--batch-size", "4", "--train-image-encoder", "--use-ema", "--lr-scheduler", "cosine",
               "--mixed-precision", "bf16"]
QUICK_MOTION_STAGE = ["--steps", "2", "--batch-size", "1", "--frames", "4"]
QUICK_RECIPE = {
    "train_characters": 3, "heldout_characters": 2, "render_size": 64,
    "runs": [
        ("stage0", 0, None, ["--config", "mini", "--steps", "3", "--batch-size", "2"]),
        ("decoder", 0, "stage0", ["--steps", "2", "--batch-size", "2"]),
        ("stage1", 1, "decoder", ["--steps", "3", "--batch-size", "2", "--train-image-encoder"]),
        ("stage1-ema", 1, "stage1", ["--steps", "2", "--batch-size", "2", "--train-image-encoder", "--use-ema",
                                     "--lr-scheduler", "cosine"]),
        ("stage1-more", 1, "stage1-ema", ["--steps", "4", "--stop-at", "2", "--batch-size", "2",
                                          "--train-image-encoder", "--use-ema", "--lr-scheduler", "cosine"]),
        ("stage1-large-batch", 1, "stage1-more", QUICK_CYCLE),
        ("stage1-anneal", 1, "stage1-large-batch", QUICK_CYCLE),
        ("stage2", 2, "stage1-anneal", QUICK_MOTION_STAGE),
        ("stage1-cycle3", 1, "stage2", QUICK_CYCLE),
        ("stage2-cycle3", 2, "stage1-cycle3", QUICK_MOTION_STAGE),
    ],
    "evaluate": ["--max-clips", "2", "--num-inference-steps", "2"],
}


def command_train_mini(args: list[str]) -> int:
    """Remake spritediff-mini from nothing under out/mini/: render the data in Blender, train stages 0-2,
    evaluate on held-out characters (side and front references), write an fp16 copy
    (out/mini/spritediff-mini). Every step resumes where it stopped, so running it again after an
    interruption continues. --install then replaces the bundled model (spritediff_core/pretrained/
    spritediff-mini) with the new one; --quick runs the same commands at toy sizes into out/mini-quick/."""
    python = ensure_venv()
    quick = "--quick" in args
    recipe, out = (QUICK_RECIPE, ROOT / "out" / "mini-quick") if quick else (MINI_RECIPE, ROOT / "out" / "mini")
    data, heldout, runs = out / "data" / "train", out / "data" / "heldout", out / "runs"
    dataset = [str(python), "-m", "blender_addon", "dataset", "--size", str(recipe["render_size"])]
    spritediff = [str(python), "-m", "spritediff_core"]
    steps = [
        ("training data", dataset + ["--characters", str(recipe["train_characters"]), "--seed", "1",
                                     "--out", str(data)]),
        ("held-out data", dataset + ["--characters", str(recipe["heldout_characters"]), "--seed", "2",
                                     "--out", str(heldout)]),
    ]
    for name, stage, start_from, options in recipe["runs"]:
        start = ["--init", str(runs / start_from / "model")] if start_from else []
        steps.append((f"{name} (stage {stage})", spritediff + ["train", "--stage", str(stage), "--data", str(data),
                                                               "--out", str(runs / name), *start, *options]))
    final = runs / recipe["runs"][-1][0] / "model"
    for view in ("side", "front"):
        steps.append((f"evaluation, {view} references", spritediff + [
            "evaluate", "--model", str(final), "--data", str(heldout), "--reference-view", view, "--views", "side",
            "--out", str(out / "evaluation" / view), *recipe["evaluate"]]))
    shipped = out / "spritediff-mini"
    steps.append(("fp16 copy", spritediff + ["convert", str(final), str(shipped), "--dtype", "fp16"]))
    env = blender_environment()
    for label, command in steps:
        log(f"train-mini: {label}")
        if label == "fp16 copy" and shipped.exists():
            shutil.rmtree(shipped)  # our own earlier copy: convert writes only into a new folder
        run(command, cwd=ROOT, env=env)
    if "--install" in args and not quick:
        if BUNDLED_MINI.exists():
            shutil.rmtree(BUNDLED_MINI)
        shutil.copytree(shipped, BUNDLED_MINI, ignore=shutil.ignore_patterns(".spritediff-files.json"))
        log(f"installed {BUNDLED_MINI.relative_to(ROOT)}")
    log(f"spritediff-mini: {shipped.relative_to(ROOT)}; evaluation: {(out / 'evaluation').relative_to(ROOT)}/")
    return 0


COMMANDS = {"test": command_test, "demo": command_demo, "extension": command_extension, "bench": command_bench,
            "train-mini": command_train_mini}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
