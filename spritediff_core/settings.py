"""Every setting of a generation, in one place: its name, default, range and meaning.

Three small frozen dataclasses by concern, composed into `GenerationSettings`:
- `SamplingSettings`: what to generate (size, steps, guidance, seed, loop, context windows).
- `RuntimeSettings`: how to run it (device, precision, speed and memory switches); all but those marked
  APPROXIMATE leave the frames unchanged beyond float rounding. The pipeline takes this object.
- `PackingSettings`: how the frames become a sprite sheet (layout, padding, transparency, engine format).

Names follow diffusers where it has one (`num_inference_steps`, `guidance_scale`, `decode_chunk_size`,
`enable_model_cpu_offload`, ...). Every front end maps onto these fields one to one and takes its defaults,
ranges and help from here: the `spritediff` CLI (`--num-inference-steps`), the add-on's CLI and batch files
(the same flags and keys), the add-on's panel and preferences (properties of the same names), and
`generation.json`, which records the settings and can be replayed (`spritediff generate --settings FILE`).
"Off" and "automatic" are values of the setting itself (0, "auto"), never a missing value, so that every
setting has the same default everywhere, a Blender property included.

Standard library only: the add-on imports this module at registration, before torch is installed.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import InvalidInputError

SETTINGS_FORMAT = "spritediff-settings"
SETTINGS_VERSION = 1


def setting(default, help: str, *, minimum=None, maximum=None, choices: tuple[str, ...] | None = None,
            multiple_of: int | None = None, label: str | None = None):
    """A settings field: its default and the facts every front end needs (help, range, choices)."""
    return field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum,
                                            "choices": choices, "multiple_of": multiple_of, "label": label})


def _check_value(owner: str, spec, value) -> None:
    kind = type(spec.default)
    where = f"{owner}.{spec.name}"
    if kind is bool:
        if not isinstance(value, bool):
            raise InvalidInputError(f"{where} must be true or false, got {value!r}")
        return
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(f"{where} must be a whole number, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInputError(f"{where} must be a finite number, got {value!r}")
    elif kind is str and not isinstance(value, str):
        raise InvalidInputError(f"{where} must be text, got {value!r}")
    meta = spec.metadata
    if meta["choices"] is not None and value not in meta["choices"]:
        raise InvalidInputError(f"{where} must be one of {', '.join(meta['choices'])}; got {value!r}")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise InvalidInputError(f"{where} must be at least {meta['minimum']}, got {value}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise InvalidInputError(f"{where} must be at most {meta['maximum']}, got {value}")
    if meta["multiple_of"] and value % meta["multiple_of"]:
        raise InvalidInputError(f"{where} must be a multiple of {meta['multiple_of']}, got {value}")


class _Settings:
    """Validation and plain-dict conversion shared by the settings dataclasses."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if type(spec.default) is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, spec.name, float(value))  # 3 means 3.0 (JSON, TOML, CLI)
            _check_value(type(self).__name__, spec, getattr(self, spec.name))
        self._check_together()

    def _check_together(self) -> None:
        pass

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "settings"):
        if not isinstance(values, dict):
            raise InvalidInputError(f"{where}: expected a table of settings, got {type(values).__name__}")
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(f"{where}: unknown settings {unknown} (known: {sorted(known)})")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SamplingSettings(_Settings):
    """What to generate. These change the frames."""

    width: int = setting(0, "frame width in pixels, a multiple of 8; 0: the model's native size "
                            "(spritediff-mini: 64), else 512", minimum=0, maximum=4096, multiple_of=8)
    height: int = setting(0, "frame height in pixels, a multiple of 8; 0: the model's native size",
                          minimum=0, maximum=4096, multiple_of=8)
    num_inference_steps: int = setting(25, "denoising steps (more: finer detail, slower)", minimum=1, maximum=1000,
                                       label="Steps")
    guidance_scale: float = setting(0.0, "classifier-free guidance: how strongly the frames follow the reference "
                                         "and poses (1: off, one UNet pass per step); 0: the model's recommended "
                                         "value (spritediff-mini: 1.5), else 3.5", minimum=0.0, maximum=30.0,
                                    label="Guidance")
    seed: int = setting(1234, "seed of the starting noise: the same seed and settings give the same frames",
                        minimum=0, maximum=2**31 - 1)
    loop: str = setting("auto", "cycle: the last frame leads into the first (walk, run, idle); one-shot: never "
                                "blend the end into the start (jump, attack); auto: from the animation",
                        choices=("auto", "cycle", "one-shot"))
    loop_mode: str = setting("closed", "cycles: closed rotates the context windows at every step so the last frame "
                                       "is denoised beside the first and the loop has no seam; reference keeps the "
                                       "reference implementation's fixed windows", choices=("closed", "reference"),
                             label="Loop mode")
    context_frames: int = setting(24, "frames denoised together; long animations use overlapping windows of this "
                                      "many frames (fewer: less memory)", minimum=1, maximum=256)
    context_overlap: int = setting(4, "frames shared by neighbouring context windows", minimum=0, maximum=255)

    def _check_together(self) -> None:
        if 0 < self.guidance_scale < 1:
            raise InvalidInputError(f"SamplingSettings.guidance_scale must be 0 (the model's recommended value) or "
                                    f"at least 1, got {self.guidance_scale}")
        if self.context_overlap >= self.context_frames:
            raise InvalidInputError(f"context_overlap ({self.context_overlap}) must be smaller than "
                                    f"context_frames ({self.context_frames})")


@dataclass(frozen=True)
class RuntimeSettings(_Settings):
    """How to run a generation: device, precision, speed and memory switches. All but `solver`,
    `reuse_prediction_every` and a half precision `dtype` (APPROXIMATE) leave the frames unchanged beyond
    float rounding."""

    device: str = setting("auto", "auto: CUDA, then Apple MPS, then the CPU", choices=("auto", "cuda", "mps", "cpu"))
    dtype: str = setting("auto", "precision; auto: fp16 on CUDA (as the weights were trained), fp32 elsewhere; "
                                 "fast: half precision where the hardware does it well, bf16 on CPUs with AVX-512 "
                                 "BF16 or AMX, fp16 on GPUs, else fp32 (APPROXIMATE on the CPU: changes the frames, "
                                 "about 47 dB from fp32)", choices=("auto", "fast", "fp16", "bf16", "fp32"),
                         label="Precision")
    enable_model_cpu_offload: bool = setting(False, "keep the models in CPU memory, each on the GPU only while it "
                                                    "runs (small GPUs; no effect on a CPU)", label="CPU offload")
    enable_vae_tiling: bool = setting(False, "decode very large frames in tiles (pixels at tile seams change)",
                                      label="VAE tiling")
    decode_chunk_size: int = setting(0, "frames per VAE decode (1: least memory); 0: automatic, 1 on the CPU "
                                        "(batches measured no faster there, and 400 MB more for 4 frames at 256 px), "
                                        "4 on GPUs", minimum=0, maximum=256,
                                     label="Decode chunk")
    sequential_guidance: bool = setting(False, "run the two guidance halves one after the other (about half "
                                               "the activation memory)")
    attention_chunk_size: int = setting(0, "attention over at most this many rows (frames x guidance halves) at "
                                           "once; 0: all at once", minimum=0, maximum=65536, label="Attention chunk")
    solver: str = setting("ddim", "ddim: the reference sampler; dpm++: DPM-Solver++ for fewer steps "
                                  "(APPROXIMATE: changes the frames)", choices=("ddim", "dpm++"))
    reuse_prediction_every: int = setting(1, "run the UNet only every K-th step and reuse its prediction "
                                             "in between (APPROXIMATE: changes the frames; 1: off)",
                                          minimum=1, maximum=10)
    exact_speedups: bool = setting(True, "reference keys and values projected once for all steps, the image "
                                         "embedding's one-token cross-attention without attention, on the CPU "
                                         "Winograd 3x3 convolutions (float32 rounding differences of about "
                                         "1e-5); off follows the reference implementation's order of work (for "
                                         "benchmarks)")

    def decode_chunk_for(self, device_type: str) -> int:
        """Frames per VAE decode on a device of this type: the setting, or when automatic (0) 1 on the CPU and 4
        elsewhere."""
        return self.decode_chunk_size or (1 if device_type == "cpu" else 4)

    @classmethod
    def fast(cls) -> "RuntimeSettings":
        """Fast mode: half precision where the hardware does it well (`dtype="fast"`); changes the frames."""
        return cls(dtype="fast")

    @classmethod
    def unoptimised(cls) -> "RuntimeSettings":
        """The reference implementation's way of working, for benchmarks."""
        return cls(exact_speedups=False, decode_chunk_size=1)


@dataclass(frozen=True)
class PackingSettings(_Settings):
    """How frames become a sprite sheet: packing, transparency, pixel art, engine metadata."""

    format: str = setting("texturepacker-hash", "engine metadata written beside the pages",
                          choices=("texturepacker-hash", "texturepacker-array", "aseprite", "godot"))
    layout: str = setting("maxrects", "maxrects: trimmed frames packed tightly; grid: equal cells in rows",
                          choices=("maxrects", "grid"))
    columns: int = setting(0, "grid columns; 0: as square a sheet as fits", minimum=0, maximum=1024)
    padding: int = setting(2, "transparent pixels between frames", minimum=0, maximum=256)
    extrude: int = setting(0, "repeat each frame's edge pixels this many times (against texture bleeding)",
                           minimum=0, maximum=64)
    power_of_two: bool = setting(False, "page sides rounded up to powers of two")
    max_size: int = setting(4096, "largest page side in pixels; more pages when the frames need them",
                            minimum=16, maximum=16384)
    trim: bool = setting(True, "cut each frame's empty border (the metadata keeps its place)")
    shared_anchor: bool = setting(True, "one anchor (feet) for every animation of the sheet, so they line up")
    alpha: str = setting("auto", "transparency: auto (remove the black background, keeping outlines), none, or "
                                 "rembg if installed", choices=("auto", "none", "rembg"), label="Transparency")
    pixel_height: int = setting(0, "pixel art: scale so the character is this many pixels tall; 0: off",
                                minimum=0, maximum=4096)
    palette: int = setting(0, "pixel art: reduce to this many colours shared by all frames; 0: off",
                           minimum=0, maximum=256)
    palette_from_reference: bool = setting(False, "pixel art: take the palette's colours from the reference "
                                                  "picture (up to `palette` colours, 32 when 0)")
    outline: bool = setting(False, "pixel art: add a 1-pixel dark outline")
    previews: str = setting("gif", "animated previews to write, comma-separated (gif, apng, webp), or none")

    def _check_together(self) -> None:
        if self.palette == 1:
            raise InvalidInputError("PackingSettings.palette must be 0 (off) or 2 to 256 colours, got 1")
        names = self.preview_formats
        bad = [name for name in names if name not in ("gif", "apng", "webp")]
        if bad:
            raise InvalidInputError(f"PackingSettings.previews: unknown preview formats {bad} "
                                    "(gif, apng, webp or none)")

    @property
    def preview_formats(self) -> tuple[str, ...]:
        text = self.previews.strip().lower()
        return () if text in ("", "none") else tuple(part.strip() for part in text.split(","))


def check_runtime_settings(runtime: RuntimeSettings) -> None:
    """What the environment must offer for these runtime settings, checked before any weights load."""
    if runtime.device != "auto":
        from .devices import resolve_device

        resolve_device(runtime.device)  # a device this machine lacks is refused here
    if runtime.enable_model_cpu_offload:
        import importlib.util

        if importlib.util.find_spec("accelerate") is None:
            raise InvalidInputError("enable_model_cpu_offload needs the accelerate package (pip install accelerate)")


CONCERNS = {"sampling": SamplingSettings, "runtime": RuntimeSettings, "packing": PackingSettings}


@dataclass(frozen=True)
class GenerationSettings:
    """All settings of one generation: what, how, and how to pack it."""

    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    packing: PackingSettings = field(default_factory=PackingSettings)

    def to_dict(self) -> dict[str, Any]:
        return {"format": SETTINGS_FORMAT, "version": SETTINGS_VERSION,
                **{name: getattr(self, name).to_dict() for name in CONCERNS}}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "settings") -> "GenerationSettings":
        """Settings from `to_dict`'s form (a `generation.json`'s "settings"); missing fields take defaults."""
        if not isinstance(values, dict):
            raise InvalidInputError(f"{where}: expected a JSON object of settings")
        if values.get("format", SETTINGS_FORMAT) != SETTINGS_FORMAT:
            raise InvalidInputError(f"{where}: format is {values.get('format')!r}, expected {SETTINGS_FORMAT!r}")
        unknown = sorted(set(values) - set(CONCERNS) - {"format", "version"})
        if unknown:
            raise InvalidInputError(f"{where}: unknown sections {unknown} (known: {sorted(CONCERNS)})")
        return cls(**{name: kind.from_dict(values.get(name, {}), f"{where}.{name}")
                      for name, kind in CONCERNS.items()})

    def with_flat(self, values: dict[str, Any], where: str = "settings") -> "GenerationSettings":
        """These settings with some fields replaced by name (field names are unique across the concerns)."""
        by_concern: dict[str, dict[str, Any]] = {name: {} for name in CONCERNS}
        for key, value in values.items():
            concern = CONCERN_OF.get(key)
            if concern is None:
                raise InvalidInputError(f"{where}: unknown setting {key!r}")
            by_concern[concern][key] = value
        return replace(self, **{name: replace(getattr(self, name), **changes)
                                for name, changes in by_concern.items() if changes})


CONCERN_OF = {spec.name: name for name, kind in CONCERNS.items() for spec in fields(kind)}


def default_of(name: str):
    """The default of a setting by field name."""
    return next(spec.default for spec in fields(CONCERNS[CONCERN_OF[name]]) if spec.name == name)


def setting_range(name: str) -> tuple[Any, Any]:
    """(minimum, maximum) of a numeric setting by field name."""
    meta = next(spec.metadata for spec in fields(CONCERNS[CONCERN_OF[name]]) if spec.name == name)
    return meta["minimum"], meta["maximum"]


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def label_of(spec) -> str:
    return spec.metadata["label"] or spec.name.replace("_", " ").capitalize()


# ---------------------------------------------------------------- command lines
def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_settings_arguments(parser: argparse.ArgumentParser, *concerns: str) -> None:
    """One flag per field of the named concerns (`--num-inference-steps`, `--enable-model-cpu-offload`...),
    each defaulting to "not given" so that `settings_from_args` can tell a typed value from a default and
    a `--settings` file can supply the rest. Values are checked by the settings classes, in one place."""
    for concern in concerns:
        kind = CONCERNS[concern]
        group = parser.add_argument_group(f"{concern} settings ({kind.__doc__.splitlines()[0].rstrip('.')})")
        for spec in fields(kind):
            _add_field_argument(group, spec)


def add_setting_argument(parser, name: str, help: str | None = None) -> None:
    """The flag of one setting, for a command that needs only it (e.g. `pack --loop`)."""
    spec = next(spec for spec in fields(CONCERNS[CONCERN_OF[name]]) if spec.name == name)
    _add_field_argument(parser, spec, help)


def _add_field_argument(parser, spec, help: str | None = None) -> None:
    text = help or f"{spec.metadata['help']} (default: {spec.default})"
    if isinstance(spec.default, bool):
        parser.add_argument(flag_of(spec.name), dest=spec.name, action=argparse.BooleanOptionalAction,
                            default=None, help=text)
    else:
        parser.add_argument(flag_of(spec.name), dest=spec.name, type=type(spec.default), default=None,
                            choices=spec.metadata["choices"], help=text,
                            metavar=None if spec.metadata["choices"] else spec.name.split("_")[-1].upper())


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings flags that were given on the command line, by field name."""
    return {name: getattr(args, name) for name in CONCERN_OF
            if getattr(args, name, None) is not None}


def settings_from_args(args: argparse.Namespace, base: GenerationSettings | None = None) -> GenerationSettings:
    """`base` (defaults, or a replayed file) with the flags that were given on top."""
    return (base or GenerationSettings()).with_flat(given_settings(args), "command line")


def read_settings_file(path) -> GenerationSettings:
    """Settings recorded in a `generation.json` (its "settings"), or a file holding only them."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"settings file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidInputError(f"settings file {path} is a folder: give a generation.json") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise InvalidInputError(f"settings file {path} is not valid JSON "
                                f"({str(error) or type(error).__name__})") from None
    if isinstance(data, dict) and isinstance(data.get("settings"), dict):
        data = data["settings"]
    return GenerationSettings.from_dict(data, str(path))


__all__ = [
    "CONCERNS", "CONCERN_OF", "GenerationSettings", "PackingSettings", "RuntimeSettings",
    "SamplingSettings", "add_setting_argument", "add_settings_arguments", "default_of", "flag_of",
    "given_settings", "label_of",
    "read_settings_file", "settings_from_args",
]
