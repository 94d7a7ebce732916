"""Python packages the diffusion core needs inside Blender, which ships none of them.

They are installed with pip, run by Blender's own Python, into the extension's user folder
(`bpy.utils.extension_path_user`), never into the extension's own folder (replaced on every update), and
that folder is put on sys.path when the add-on registers. The user picks the PyTorch build (CUDA or CPU);
an optional folder of wheels allows offline installs. Progress and the full pip log are kept.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

# (import name, distribution) of each package the core needs; the versions come from requirements.txt, the
# one list of pins the project is tested with (the build copies it into the extension).
RUNTIME_PACKAGES = (
    ("torch", "torch"),
    ("diffusers", "diffusers"),
    ("transformers", "transformers"),
    ("safetensors", "safetensors"),
    ("accelerate", "accelerate"),  # model CPU offload
    ("PIL", "pillow"),
    ("cv2", "opencv-python-headless"),
    ("yaml", "pyyaml"),
    ("tqdm", "tqdm"),
    ("rectpack", "rectpack"),
)
REQUIREMENTS_FILE = "requirements.txt"


def read_pins(path: Path | None = None) -> dict[str, str]:
    """{distribution: version} from requirements.txt: beside this module in the extension, else the
    repository's."""
    if path is None:
        here = Path(__file__).resolve().parent
        path = here / REQUIREMENTS_FILE
        if not path.is_file():
            path = here.parent / REQUIREMENTS_FILE
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def _pinned_packages() -> tuple[tuple[str, str], ...]:
    pins = read_pins()
    missing = [name for _, name in RUNTIME_PACKAGES if name not in pins]
    if missing:
        raise RuntimeError(f"{REQUIREMENTS_FILE} pins no version of {missing}")
    return tuple((module, f"{name}=={pins[name]}") for module, name in RUNTIME_PACKAGES)


# (import name, pip requirement)
PACKAGES = _pinned_packages()
# PyTorch's own package index per build; PyPI's default torch wheels for Linux are the CUDA build.
TORCH_INDEXES = {
    "cuda": None,
    "cpu": "https://download.pytorch.org/whl/cpu",
}


def missing_packages(packages: Sequence[tuple[str, str]] = PACKAGES) -> list[str]:
    """pip requirements of the packages that cannot be imported here."""
    return [requirement for module, requirement in packages if not _importable(module)]


def require(modules: Sequence[str] | None = None) -> None:
    """Raise a clear error naming what to install when a needed package is missing."""
    wanted = [(m, r) for m, r in PACKAGES if modules is None or m in modules]
    missing = missing_packages(wanted)
    if missing:
        from spritediff_core.errors import SpriteDiffError

        raise SpriteDiffError("missing Python packages: " + ", ".join(r.split("==")[0] for r in missing)
                              + "; install them from the spritediff preferences (Install Packages)")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-installed package
        return False


def site_packages_folder(package: str, create: bool = True) -> Path:
    """The extension's private install folder, under Blender's user extension data."""
    import bpy

    return Path(bpy.utils.extension_path_user(package, path="site-packages", create=create))


def add_to_path(folder: Path) -> None:
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))  # after Blender's own packages: never shadow Blender's numpy


@dataclass
class InstallProgress:
    done: bool = False
    ok: bool = False
    lines: list[str] = field(default_factory=list)
    log_path: Path | None = None

    @property
    def last_line(self) -> str:
        return self.lines[-1] if self.lines else ""


def pip_command(requirements: Sequence[str], target: Path, build: str = "cuda", wheels: Path | None = None,
                python: str = sys.executable) -> list[str]:
    """The pip call: Blender's Python, into `target`; where a package needs numpy, the version pip puts
    there is constrained to Blender's own, so Blender's modules keep working."""
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--upgrade",
               "--target", str(target)]
    if wheels is not None:
        command += ["--no-index", "--find-links", str(wheels)]
    elif TORCH_INDEXES.get(build):
        command += ["--extra-index-url", TORCH_INDEXES[build]]
    if importlib.util.find_spec("numpy") is not None:
        import numpy

        constraints = target.parent / "constraints.txt"
        constraints.write_text(f"numpy=={numpy.__version__}\n", encoding="utf-8")
        command += ["--constraint", str(constraints)]
    return command + list(requirements)


def install(requirements: Sequence[str], target: Path, build: str = "cuda", wheels: Path | None = None,
            on_line: Callable[[str], None] | None = None, python: str = sys.executable) -> InstallProgress:
    """Run pip (blocking); every output line goes to the log file and to `on_line`."""
    if build not in TORCH_INDEXES:
        raise ValueError(f"build must be one of {sorted(TORCH_INDEXES)}, got {build!r}")
    target.mkdir(parents=True, exist_ok=True)
    progress = InstallProgress(log_path=target.parent / "pip-install.log")
    command = pip_command(requirements, target, build, wheels, python)
    with open(progress.log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            line = line.rstrip()
            log.write(line + "\n")
            progress.lines.append(line)
            if on_line is not None:
                on_line(line)
        progress.ok = process.wait() == 0
    progress.done = True
    if progress.ok:
        add_to_path(target)
        importlib.invalidate_caches()
    return progress


def install_in_background(requirements: Sequence[str], target: Path, build: str = "cuda",
                          wheels: Path | None = None) -> tuple[threading.Thread, InstallProgress]:
    """The same on a thread, for the preferences' Install button; poll the returned progress."""
    progress = InstallProgress(log_path=target.parent / "pip-install.log")

    def run() -> None:
        result = install(requirements, target, build, wheels, on_line=progress.lines.append)
        progress.ok, progress.done = result.ok, True

    thread = threading.Thread(target=run, name="spritediff-pip", daemon=True)
    thread.start()
    return thread, progress
