#!/usr/bin/env python3
"""spritediff's one entry point (standard library only).

    python3 build.py test [PYTEST ARGS]   set up .venv, then run the whole test suite
    python3 build.py demo [--out DIR]     set up .venv, then run the headless demo (the main job)

Setting up means: create `.venv` (or refresh it when requirements.txt changed), install the pinned
requirements in one pip command (bpy needs numpy<2, see requirements.txt), install spritediff itself
(editable), and install the Debian libraries bpy needs when they are missing. A second run reuses
everything and takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / ".spritediff-setup"
# Shared libraries the PyPI `bpy` module loads at import (libegl1 for Workbench/EEVEE renders).
DEBIAN_PACKAGES = ["libx11-6", "libxrender1", "libxfixes3", "libxi6", "libxkbcommon0", "libxext6", "libsm6",
                   "libgl1", "libegl1"]


def log(message: str) -> None:
    print(f"[build] {message}", flush=True)


def run(command: list[str], **kwargs) -> None:
    log(" ".join(str(part) for part in command))
    subprocess.run(command, check=True, **kwargs)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def setup_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, ROOT / "pyproject.toml"):
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


def ensure_venv() -> Path:
    ensure_debian_libraries()
    fingerprint = setup_fingerprint()
    python = venv_python()
    if python.exists() and STAMP.exists() and STAMP.read_text() == fingerprint:
        return python
    if not python.exists():
        log(f"creating {VENV.name}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    # One pip command for everything pinned: installing opencv or torch later would let pip pull numpy 2.
    run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(REQUIREMENTS)])
    run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "-e", str(ROOT)])
    STAMP.write_text(fingerprint)
    return python


def command_test(args: list[str]) -> int:
    python = ensure_venv()
    return subprocess.run([str(python), "-m", "pytest", str(ROOT / "tests"), *args], cwd=ROOT).returncode


DEMO_MODEL = ROOT / "tests" / "fixtures" / "moore-tiny"


def command_demo(args: list[str]) -> int:
    """Generate sprite frames from the bundled tiny model's reference and poses (pass --model for real
    weights, plus any other `spritediff generate` option)."""
    python = ensure_venv()
    defaults = {
        "--model": str(DEMO_MODEL / "pretrained_weights"),
        "--reference": str(DEMO_MODEL / "inputs" / "ref.png"),
        "--poses": str(DEMO_MODEL / "inputs" / "pose_*.png"),
        "--out": str(ROOT / "demo_output" / "frames"),
        "--width": "64", "--height": "64", "--steps": "3", "--seed": "1234",
    }
    given = {arg.split("=")[0] for arg in args if arg.startswith("--")}
    options = [part for key, value in defaults.items() if key not in given for part in (key, value)]
    command = [str(python), "-m", "spritediff_core", "generate", *options, *args]
    return subprocess.run(command, cwd=ROOT).returncode


COMMANDS = {"test": command_test, "demo": command_demo}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
