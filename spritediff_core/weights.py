"""Finding and reading the checkpoints of a Moore-AnimateAnyone `pretrained_weights/` folder.

Everything here is safe to run on files from the internet: `.safetensors` files are memory-mapped and
`.pth` files are read with `torch.load(weights_only=True)`, which refuses pickled code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .errors import UnsupportedConfigError, WeightsMismatchError, WeightsNotFoundError, first_line

if TYPE_CHECKING:  # torch and PyYAML are imported where they are used: finding a folder needs neither
    import torch

UNET_CONFIG = Path("stable-diffusion-v1-5") / "unet" / "config.json"
VAE_DIR = "sd-vae-ft-mse"
IMAGE_ENCODER_DIR = "image_encoder"
INFERENCE_CONFIG = "inference_v2.yaml"
# spritediff's own addition to the layout: what a model is (name, native size, recommended settings).
MODEL_CARD = "spritediff.json"
# The model every installation carries (the repository, the Python package, the extension zip).
DEFAULT_MODEL = Path(__file__).resolve().parent / "pretrained" / "spritediff-mini"

# What each checkpoint is, for error messages that tell a user what they are missing.
COMPONENTS = {
    "denoising_unet": "the denoising UNet (spatial layers) of Moore-AnimateAnyone, "
    "or Sprite Sheet Diffusion's fine-tune `denoising_unet-30000.pth`",
    "reference_unet": "the ReferenceNet of Moore-AnimateAnyone, "
    "or Sprite Sheet Diffusion's fine-tune `reference_unet-30000.pth`",
    "pose_guider": "the PoseGuider of Moore-AnimateAnyone (Sprite Sheet Diffusion reuses it)",
    "motion_module": "the AnimateDiff motion module of Moore-AnimateAnyone",
}
FOLDERS = {
    UNET_CONFIG.as_posix(): "the UNet config.json of stable-diffusion-v1-5 (config only; no weights are read from it)",
    VAE_DIR: "the sd-vae-ft-mse VAE folder (diffusers AutoencoderKL)",
    IMAGE_ENCODER_DIR: "the image_encoder folder of lambdalabs/sd-image-variations-diffusers "
    "(transformers CLIPVisionModelWithProjection)",
}

# Built-in defaults, equal to Moore-AnimateAnyone's configs/inference/inference_v2.yaml.
DEFAULT_UNET_ADDITIONAL_KWARGS: dict[str, Any] = {
    "use_inflated_groupnorm": True,
    "unet_use_cross_frame_attention": False,
    "unet_use_temporal_attention": False,
    "use_motion_module": True,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": True,
    "motion_module_decoder_only": False,
    "motion_module_type": "Vanilla",
    "motion_module_kwargs": {
        "num_attention_heads": 8,
        "num_transformer_block": 1,
        "attention_block_types": ["Temporal_Self", "Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": 32,
        "temporal_attention_dim_div": 1,
    },
}
DEFAULT_NOISE_SCHEDULER_KWARGS: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}


@dataclass(frozen=True)
class WeightsLayout:
    """The files of one `pretrained_weights/` folder, resolved and checked to exist."""

    root: Path
    unet_config: Path
    denoising_unet: Path
    reference_unet: Path
    pose_guider: Path
    motion_module: Path
    vae: Path
    image_encoder: Path
    inference_config: Path | None


@dataclass
class InferenceConfig:
    """Moore's inference_v2.yaml: motion-module settings and scheduler settings, defaults filled in."""

    unet_additional_kwargs: dict[str, Any] = field(
        default_factory=lambda: json.loads(json.dumps(DEFAULT_UNET_ADDITIONAL_KWARGS))
    )
    noise_scheduler_kwargs: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_NOISE_SCHEDULER_KWARGS))


def _find_checkpoint(root: Path, stem: str) -> Path:
    """`stem.safetensors` before `stem.pth`; a fine-tune `stem-<step>` (highest step) before the base one."""
    pattern = re.compile(rf"^{re.escape(stem)}(?:-(\d+))?\.(safetensors|pth)$")
    candidates = []
    for path in root.iterdir() if root.is_dir() else ():
        match = pattern.match(path.name)
        if match and path.is_file():
            step = int(match.group(1)) if match.group(1) else -1
            candidates.append((step, match.group(2) == "safetensors", path))
    if not candidates:
        raise WeightsNotFoundError(
            f"{stem}.pth not found in {root}: it holds {COMPONENTS[stem]}. "
            f"Expected {stem}.safetensors, {stem}.pth or {stem}-<step>.pth there."
        )
    candidates.sort(key=lambda c: (c[0], c[1]))
    return candidates[-1][2]


def _require(root: Path, relative: str | Path, is_dir: bool) -> Path:
    path = root / relative
    if (is_dir and not path.is_dir()) or (not is_dir and not path.is_file()):
        key = Path(relative).as_posix()
        raise WeightsNotFoundError(f"{key} not found in {root}: it should hold {FOLDERS[key]}.")
    return path


def locate_weights(root: str | Path) -> WeightsLayout:
    """Resolve every file of a Moore `pretrained_weights/` folder, or say exactly which one is missing."""
    root = Path(root).expanduser()
    if root.is_file():
        raise WeightsNotFoundError(f"model {root} is a file: pass the weights folder (Moore-AnimateAnyone's "
                                   "`pretrained_weights/` layout) that holds it")
    if not root.is_dir():
        raise WeightsNotFoundError(
            f"model folder {root} does not exist: pass a Moore-AnimateAnyone `pretrained_weights/` folder"
        )
    inference = root / INFERENCE_CONFIG
    for folder in (VAE_DIR, IMAGE_ENCODER_DIR):  # without its config a library would build a default model
        if (root / folder).is_dir():
            _require(root, Path(folder) / "config.json", is_dir=False)
    return WeightsLayout(
        root=root,
        unet_config=_require(root, UNET_CONFIG, is_dir=False),
        denoising_unet=_find_checkpoint(root, "denoising_unet"),
        reference_unet=_find_checkpoint(root, "reference_unet"),
        pose_guider=_find_checkpoint(root, "pose_guider"),
        motion_module=_find_checkpoint(root, "motion_module"),
        vae=_require(root, VAE_DIR, is_dir=True),
        image_encoder=_require(root, IMAGE_ENCODER_DIR, is_dir=True),
        inference_config=inference if inference.is_file() else None,
    )


def default_model() -> Path:
    """The bundled spritediff-mini weights folder."""
    if not (DEFAULT_MODEL / UNET_CONFIG).is_file():
        raise WeightsNotFoundError(
            f"the bundled spritediff-mini model is missing from this installation ({DEFAULT_MODEL}); "
            "remake it with `python3 build.py train-mini`, or pass a weights folder"
        )
    return DEFAULT_MODEL


def resolve_model(path: str | Path | None) -> Path:
    """The weights folder to use: the one given, else the bundled spritediff-mini."""
    if path is None or not str(path).strip():
        return default_model()
    return Path(path).expanduser()


def generation_size(model: str | Path | None, width: int | None, height: int | None) -> tuple[int, int]:
    """Width and height to generate at: as given, else the model's native size, else SD1.5's 512."""
    native = read_model_card(resolve_model(model)).get("native_size") or (512, 512)
    return int(width or native[0]), int(height or native[1])


DEFAULT_GUIDANCE_SCALE = 3.5  # Moore-AnimateAnyone's


def recommended_guidance(card: dict[str, Any]) -> float:
    """The guidance scale a model card recommends (`"recommended": {"guidance_scale": ...}`), else 3.5."""
    value = (card.get("recommended") or {}).get("guidance_scale") if isinstance(card.get("recommended"), dict) \
        else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1.0 <= value <= 30.0:
        return DEFAULT_GUIDANCE_SCALE
    return float(value)


def generation_guidance(model: str | Path | None, guidance_scale: float) -> float:
    """The guidance scale to generate with: as given, else (0) the model's recommended one."""
    return float(guidance_scale) or recommended_guidance(read_model_card(resolve_model(model)))


def read_model_card(root: str | Path) -> dict[str, Any]:
    """The folder's `spritediff.json` (empty for weights made elsewhere, such as Moore's)."""
    path = Path(root) / MODEL_CARD
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UnsupportedConfigError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(card, dict):
        raise UnsupportedConfigError(f"{path}: expected a JSON object")
    return card


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint without executing anything from it (mmap where the format allows)."""
    import torch
    from safetensors.torch import load_file as load_safetensors

    try:
        if path.suffix == ".safetensors":
            state = load_safetensors(str(path))
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:
                if "mmap" not in str(error):
                    raise
                # Checkpoints in torch's legacy (pre-1.6) format cannot be memory-mapped.
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt files, pickles with code, truncated downloads
        raise WeightsMismatchError(f"{path}: cannot be read as a checkpoint ({first_line(error)}); it may be "
                                   "truncated, or hold pickled code, which spritediff never runs") from error
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsMismatchError(f"{path.name}: not a state dict of tensors")
    return dict(state)


def check_loading_info(folder: Path, info: dict) -> None:
    """Every weight of a library-loaded model came from its file: none missing, reinitialised or left over."""
    problems = {name: list(info.get(name) or []) for name in ("missing_keys", "mismatched_keys", "unexpected_keys")}
    problems = {name: keys for name, keys in problems.items() if keys}
    if problems:
        name, keys = next(iter(problems.items()))
        first = keys[0][0] if isinstance(keys[0], tuple) else keys[0]
        raise WeightsMismatchError(f"{folder}: the weights do not fit its config.json ({len(keys)} "
                                   f"{name.replace('_', ' ')}, e.g. {first})")


def read_unet_config(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as error:
        raise UnsupportedConfigError(f"{path}: not a readable JSON UNet config ({first_line(error)})") from None
    if not isinstance(config, dict):
        raise UnsupportedConfigError(f"{path}: expected a JSON object")
    return config


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_inference_config(path: Path | None) -> InferenceConfig:
    """Defaults (Moore's inference_v2) overridden by the folder's `inference_v2.yaml`, if any."""
    config = InferenceConfig()
    if path is None:
        return config
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise UnsupportedConfigError(f"{path}: not readable YAML ({first_line(error)})") from None
    if not isinstance(data, Mapping):
        raise UnsupportedConfigError(f"{path.name}: expected a mapping at the top level")
    config.unet_additional_kwargs = _merge(config.unet_additional_kwargs, data.get("unet_additional_kwargs") or {})
    config.noise_scheduler_kwargs = _merge(config.noise_scheduler_kwargs, data.get("noise_scheduler_kwargs") or {})
    sampler = data.get("sampler", "DDIM")
    if sampler != "DDIM":
        raise UnsupportedConfigError(f"{path.name}: sampler {sampler!r} is not supported (only DDIM)")
    return config


def check_state_dict(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    source: str,
    tolerated_extra: Iterable[str] = (),
    recomputed: Iterable[str] = (),
    file_keys: Mapping[str, str] | None = None,
) -> dict[str, torch.Tensor]:
    """Check that `state` fills exactly the `expected` keys and shapes, or fail naming file, keys and shapes.

    `tolerated_extra`: keys of `state` deliberately left unused (such as the ReferenceNet's output head).
    `recomputed`: expected keys the model computes itself (position encodings), absent from `state` on purpose.
    `file_keys`: the name each key of `state` has in the file, where `state` was renamed, for the messages.
    Returns the tensors to load, keyed as in `expected`.
    """
    file_keys = file_keys or {}
    tolerated_extra, recomputed = set(tolerated_extra), set(recomputed)
    problems = []
    for key, tensor in expected.items():
        if key in recomputed:
            continue
        if key not in state:
            problems.append(f"missing key {key!r} (expected shape {tuple(tensor.shape)})")
        elif tuple(state[key].shape) != tuple(tensor.shape):
            problems.append(
                f"key {file_keys.get(key, key)!r} has shape {tuple(state[key].shape)}, "
                f"expected shape {tuple(tensor.shape)}"
            )
    for key in state:
        if key not in expected and key not in tolerated_extra:
            problems.append(f"unexpected key {file_keys.get(key, key)!r} (shape {tuple(state[key].shape)})")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise WeightsMismatchError(f"{source}: {len(problems)} key problem(s):\n  {shown}{more}")
    return {key: state[key] for key in expected if key not in recomputed}


def load_checked(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    tolerated_extra: Iterable[str] = (),
) -> None:
    """Load a whole model from one checkpoint, every key accounted for."""
    model.load_state_dict(check_state_dict(model.state_dict(), state, source, tolerated_extra), strict=True)


def weights_fingerprint(root: str | Path) -> dict[str, Any]:
    """A cheap identity of a weights folder, for reproducing a result: each checkpoint's name, size and a
    SHA-256 of its first and last MiB (enough to tell releases and fine-tunes apart without reading GBs)."""
    import hashlib

    layout = locate_weights(root)
    files = [layout.denoising_unet, layout.reference_unet, layout.pose_guider, layout.motion_module]
    files += sorted(p for folder in (layout.vae, layout.image_encoder) for p in folder.iterdir() if p.is_file())
    identity = {}
    for path in files:
        digest = hashlib.sha256()
        size = path.stat().st_size
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
            if size > 2 << 20:
                handle.seek(-(1 << 20), 2)
                digest.update(handle.read())
        identity[path.relative_to(layout.root).as_posix()] = {"size": size, "sha256_ends": digest.hexdigest()}
    return {"folder": str(layout.root.resolve()), "files": identity}
