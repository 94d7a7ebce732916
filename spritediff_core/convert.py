"""`spritediff convert`: rewrite a weights folder as safetensors (memory-mapped, no pickle), optionally fp16."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from .errors import InvalidInputError
from .staged_writes import staged_directory
from .weights import IMAGE_ENCODER_DIR, MODEL_CARD, UNET_CONFIG, VAE_DIR, load_state_dict, locate_weights

# Within the diffusers/transformers folders: pickled weight files and the safetensors name each library reads.
LIBRARY_WEIGHTS = {
    VAE_DIR: ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors"),
    IMAGE_ENCODER_DIR: ("pytorch_model.bin", "model.safetensors"),
}


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    converted = {}
    for key, tensor in state.items():
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        converted[key] = tensor.contiguous().clone()  # safetensors refuses shared or strided storage
    return converted


def _save(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype | None) -> None:
    save_file(_cast(state, dtype), str(path), metadata={"format": "pt"})


def convert_weights(source: str | Path, destination: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write a copy of `source` (a Moore `pretrained_weights/` folder) to `destination` with every
    checkpoint as .safetensors; names and key formats are kept, so the loader treats both the same."""
    layout = locate_weights(source)
    destination = Path(destination)
    if destination.is_dir() and any(destination.iterdir()):
        raise InvalidInputError(f"{destination} is not empty: convert into a new folder")
    with staged_directory(destination, [source], replace_previous_run=False, kind="weights") as staging:
        for checkpoint in (layout.denoising_unet, layout.reference_unet, layout.pose_guider, layout.motion_module):
            _save(load_state_dict(checkpoint), staging / f"{checkpoint.stem}.safetensors", dtype)
        (staging / UNET_CONFIG).parent.mkdir(parents=True)
        shutil.copy2(layout.unet_config, staging / UNET_CONFIG)
        if layout.inference_config is not None:
            shutil.copy2(layout.inference_config, staging / layout.inference_config.name)
        if (layout.root / MODEL_CARD).is_file():
            shutil.copy2(layout.root / MODEL_CARD, staging / MODEL_CARD)
        for folder, (pickled, safe) in LIBRARY_WEIGHTS.items():
            source_dir, target_dir = layout.root / folder, staging / folder
            target_dir.mkdir()
            for path in source_dir.iterdir():
                if path.name == pickled and not (source_dir / safe).exists():
                    _save(load_state_dict(path), target_dir / safe, dtype)
                elif path.name == safe:
                    _save(load_state_dict(path), target_dir / safe, dtype)
                elif path.is_file() and path.name != pickled:
                    shutil.copy2(path, target_dir / path.name)
    return destination
