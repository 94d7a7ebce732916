"""The trainable parts of a weights folder, loaded from and written back in Moore-AnimateAnyone's layout.

A folder written here loads with `SpriteSheetPipeline.from_pretrained` unchanged: the SD1.5-style UNet config,
`denoising_unet` (spatial layers), `reference_unet`, `pose_guider`, `motion_module` (Moore's key names), the
VAE and the image encoder as diffusers/transformers folders, and an `inference_v2.yaml` whose scheduler is the
one the model was trained with. Checkpoints are written as safetensors (the loader prefers them).

During training the denoising UNet is kept as its two halves: a `UNet2DConditionModel` for the spatial layers
(stage 1 trains images, without motion modules, as Moore's stage 1 does) and, in stage 2, the full
`UNetMotionModel` built by the pipeline's own builder.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel, UNetMotionModel
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from safetensors.torch import save_file
from transformers import CLIPVisionModelWithProjection

from ..errors import WeightsNotFoundError
from ..models.denoising_unet import build_denoising_unet, load_denoising_unet_weights
from ..models.pose_guider import build_pose_guider
from ..pipeline import REFERENCE_HEAD
from ..weights import (
    IMAGE_ENCODER_DIR,
    INFERENCE_CONFIG,
    MODEL_CARD,
    UNET_CONFIG,
    VAE_DIR,
    InferenceConfig,
    check_loading_info,
    load_checked,
    load_state_dict,
    locate_weights,
    read_inference_config,
    read_model_card,
    read_unet_config,
)


@dataclass
class ModelParts:
    """Every model of a weights folder as trainable modules, plus what is needed to write them back."""

    unet_config: dict[str, Any]
    inference: InferenceConfig
    vae: AutoencoderKL
    image_encoder: CLIPVisionModelWithProjection
    reference_unet: UNet2DConditionModel  # without its output head (never used)
    spatial_unet: UNet2DConditionModel  # the denoising UNet's spatial layers
    pose_guider: torch.nn.Module
    motion_state: dict[str, torch.Tensor]  # diffusers key names, as in UNetMotionModel.state_dict()
    card: dict[str, Any] = field(default_factory=dict)

    def motion_unet(self) -> UNetMotionModel:
        """The full denoising UNet (spatial layers + motion modules), built as the pipeline builds it."""
        unet = build_denoising_unet(self.unet_config, self.inference.unet_additional_kwargs)
        expected = unet.state_dict()
        state = dict(self.spatial_unet.state_dict())
        state.update({key: value for key, value in self.motion_state.items()})
        state.update({key: expected[key] for key in expected if key.endswith(".pos_embed.pe")})
        unet.load_state_dict(state, strict=True)
        return unet


def zero_motion_state(unet_config: dict[str, Any], inference: InferenceConfig) -> dict[str, torch.Tensor]:
    """Fresh motion modules that change nothing: AnimateDiff initialises each module's output projection to
    zero, so before stage 2 the denoising UNet is exactly its spatial part, frame by frame."""
    unet = build_denoising_unet(unet_config, inference.unet_additional_kwargs)
    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            torch.nn.init.zeros_(module.proj_out.weight)
            torch.nn.init.zeros_(module.proj_out.bias)
    return {key: value for key, value in unet.state_dict().items()
            if ".motion_modules." in key and not key.endswith(".pos_embed.pe")}


def without_reference_head(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """The ReferenceNet's output head is never used (only its attention inputs are): drop it, as the
    pipeline does, so no optimiser state or checkpoint space goes to it."""
    unet.conv_norm_out = None
    unet.conv_out = torch.nn.Identity()
    return unet


def load_parts(path: str | Path) -> ModelParts:
    """A weights folder (Moore's layout, ours included) as trainable modules on the CPU in float32."""
    layout = locate_weights(path)
    unet_config = read_unet_config(layout.unet_config)
    inference = read_inference_config(layout.inference_config)
    reference_unet = without_reference_head(UNet2DConditionModel.from_config(unet_config))
    load_checked(reference_unet, load_state_dict(layout.reference_unet), layout.reference_unet.name,
                 tolerated_extra=REFERENCE_HEAD)
    spatial_unet = UNet2DConditionModel.from_config(unet_config)
    motion_unet = build_denoising_unet(unet_config, inference.unet_additional_kwargs)
    # The pipeline's own loader checks both files against the full model; the halves are then split off.
    load_denoising_unet_weights(motion_unet, load_state_dict(layout.denoising_unet), layout.denoising_unet.name,
                                load_state_dict(layout.motion_module), layout.motion_module.name)
    full = motion_unet.state_dict()
    spatial_unet.load_state_dict({k: v for k, v in full.items() if ".motion_modules." not in k}, strict=True)
    motion_state = {k: v.clone() for k, v in full.items()
                    if ".motion_modules." in k and not k.endswith(".pos_embed.pe")}
    del motion_unet, full
    pose_guider = build_pose_guider(load_state_dict(layout.pose_guider), layout.pose_guider.name,
                                    unet_config["block_out_channels"][0])
    try:
        vae, vae_info = AutoencoderKL.from_pretrained(layout.vae, local_files_only=True, torch_dtype=torch.float32,
                                                      output_loading_info=True)
        image_encoder, encoder_info = CLIPVisionModelWithProjection.from_pretrained(
            layout.image_encoder, local_files_only=True, dtype=torch.float32, output_loading_info=True)
    except Exception as error:  # missing or broken config, truncated file: the libraries' own types
        raise WeightsNotFoundError(f"{layout.root}: cannot load the VAE or image encoder ({error})") from error
    check_loading_info(layout.vae, vae_info)  # no weight silently reinitialised
    check_loading_info(layout.image_encoder, encoder_info)
    card = read_model_card(layout.root)
    parts = ModelParts(unet_config, inference, vae, image_encoder, reference_unet, spatial_unet, pose_guider,
                       motion_state, card)
    for module in (parts.vae, parts.image_encoder, parts.reference_unet, parts.spatial_unet, parts.pose_guider):
        module.float().train().requires_grad_(False)
    return parts


# diffusers AnimateDiffTransformer3D names -> Moore/AnimateDiff motion-module names (the loader's inverse).
_MOTION_TO_MOORE = [
    (re.compile(r"(\.motion_modules\.\d+)\."), r"\1.temporal_transformer."),
    (re.compile(r"\.attn(\d+)\."), lambda m: f".attention_blocks.{int(m.group(1)) - 1}."),
    (re.compile(r"\.norm3\."), ".ff_norm."),
    (re.compile(r"\.norm([12])\."), lambda m: f".norms.{int(m.group(1)) - 1}."),
]


def moore_motion_key(key: str) -> str:
    for pattern, replacement in _MOTION_TO_MOORE:
        key = pattern.sub(replacement, key)
    return key


def _save_tensors(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype) -> None:
    save_file({k: v.detach().to(dtype).contiguous() for k, v in state.items()}, str(path))


def save_parts(parts: ModelParts, out: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write a complete weights folder (staged, then renamed into place; an older folder there is replaced)."""
    out = Path(out)
    stage = out.with_name(out.name + ".partial")
    if stage.exists():
        shutil.rmtree(stage)
    (stage / UNET_CONFIG).parent.mkdir(parents=True)
    (stage / UNET_CONFIG).write_text(json.dumps(parts.unet_config, indent=2) + "\n", encoding="utf-8")
    _save_tensors(parts.spatial_unet.state_dict(), stage / "denoising_unet.safetensors", dtype)
    _save_tensors(parts.reference_unet.state_dict(), stage / "reference_unet.safetensors", dtype)
    _save_tensors(parts.pose_guider.state_dict(), stage / "pose_guider.safetensors", dtype)
    _save_tensors({moore_motion_key(k): v for k, v in parts.motion_state.items()},
                  stage / "motion_module.safetensors", dtype)
    parts.vae.to(dtype).save_pretrained(stage / VAE_DIR, safe_serialization=True)
    parts.image_encoder.to(dtype).save_pretrained(stage / IMAGE_ENCODER_DIR, safe_serialization=True)
    parts.vae.float()
    parts.image_encoder.float()
    inference = {"unet_additional_kwargs": parts.inference.unet_additional_kwargs,
                 "noise_scheduler_kwargs": parts.inference.noise_scheduler_kwargs, "sampler": "DDIM"}
    (stage / INFERENCE_CONFIG).write_text(yaml.safe_dump(inference, sort_keys=False), encoding="utf-8")
    if parts.card:
        (stage / MODEL_CARD).write_text(json.dumps(parts.card, indent=2) + "\n", encoding="utf-8")
    old = out.with_name(out.name + ".old")
    if out.exists():
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
    stage.rename(out)
    if old.exists():
        shutil.rmtree(old)
    return out


def new_pose_guider(unet_config: dict[str, Any], widths: tuple[int, ...]) -> torch.nn.Module:
    """A PoseGuider whose downsampling equals the VAE's (one stride-2 step per width after the first)."""
    return ControlNetConditioningEmbedding(unet_config["block_out_channels"][0], 3, widths)
