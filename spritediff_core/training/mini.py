"""spritediff-mini: Animate Anyone's architecture at a size a CPU can train and run.

Where it deviates from the reference weights, and why:
- Native size 64x64 and a VAE of its own that downsamples by 4 into 8 channels (latents 16x16x8), trained in
  stage 0 on the dataset's frames: SD1.5's VAE alone is larger than the whole model. Eight channels rather
  than SD's four because a small VAE trained for minutes on a CPU keeps flat colours much better with them
  (four lost the colours first); the UNets take whatever the VAE gives.
- An image encoder of its own (a small CLIP vision transformer, projection size = the UNets' cross-attention
  size) trained in stage 1 with the rest; the reference keeps CLIP frozen.
- UNets of three levels (64/128/128 channels, attention at 16x16 and 8x8, one layer per block): the same
  blocks, layout and reference attention as SD1.5's, smaller. Channels are multiples of 32 because the
  motion modules' GroupNorm has 32 groups.
Everything else (ReferenceNet, PoseGuider, motion modules, schedule, objective) is the recipe's.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from ..weights import DEFAULT_NOISE_SCHEDULER_KWARGS, DEFAULT_UNET_ADDITIONAL_KWARGS, InferenceConfig
from .models import ModelParts, new_pose_guider, without_reference_head, zero_motion_state

NAME = "spritediff-mini"
NATIVE_SIZE = 64
RECOMMENDED_GUIDANCE_SCALE = 1.5  # written into the model card; see new_mini_parts
CROSS_ATTENTION_DIM = 128
LATENT_CHANNELS = 8

UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "sample_size": NATIVE_SIZE // 4,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "block_out_channels": [64, 128, 128],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "layers_per_block": 1,
    "attention_head_dim": 4,  # SD1.5's config name for the number of heads
    "cross_attention_dim": CROSS_ATTENTION_DIM,
    "norm_num_groups": 32,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "act_fn": "silu",
}

VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": LATENT_CHANNELS,
    "norm_num_groups": 32,
    "sample_size": NATIVE_SIZE,
    "scaling_factor": 1.0,  # measured on the data after stage 0
}

IMAGE_ENCODER_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "image_size": 224,  # the pipeline feeds CLIP-processed 224x224 pictures, as to SD1.5's encoder
    "patch_size": 32,
    "projection_dim": CROSS_ATTENTION_DIM,
}

POSE_GUIDER_WIDTHS = (16, 32, 64)  # two stride-2 steps: the VAE's factor of 4


def inference_config() -> InferenceConfig:
    """Moore's motion-module settings for three levels; the scheduler is the training schedule
    (`scaled_linear`: Moore's own inference config says `linear`, a known mismatch we do not copy)."""
    config = InferenceConfig()
    config.unet_additional_kwargs = copy.deepcopy(DEFAULT_UNET_ADDITIONAL_KWARGS)
    config.unet_additional_kwargs["motion_module_resolutions"] = [1, 2, 4]
    config.unet_additional_kwargs["motion_module_kwargs"]["num_attention_heads"] = 4
    config.unet_additional_kwargs["motion_module_kwargs"]["temporal_position_encoding_max_len"] = 32
    config.noise_scheduler_kwargs = dict(DEFAULT_NOISE_SCHEDULER_KWARGS, beta_schedule="scaled_linear")
    return config


def new_mini_parts(seed: int = 0) -> ModelParts:
    """Every part of spritediff-mini, freshly initialised (deterministic for a seed)."""
    torch.manual_seed(seed)
    unet_config = dict(UNET_CONFIG)
    inference = inference_config()
    vae = AutoencoderKL(**VAE_CONFIG)
    with torch.no_grad():
        # Start the posterior narrow (std ~0.05): with a unit variance the latents are mostly noise and the
        # decoder first learns to paint the mean grey, which costs a CPU thousands of steps to unlearn.
        vae.quant_conv.bias[LATENT_CHANNELS:] = -6.0
    return ModelParts(
        unet_config=unet_config,
        inference=inference,
        vae=vae,
        image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**IMAGE_ENCODER_CONFIG)),
        reference_unet=without_reference_head(UNet2DConditionModel.from_config(unet_config)),
        spatial_unet=UNet2DConditionModel.from_config(unet_config),
        pose_guider=new_pose_guider(unet_config, POSE_GUIDER_WIDTHS),
        motion_state=zero_motion_state(unet_config, inference),
        # Measured on training characters' clips (stage 2, 25 steps): guidance 1.25-1.5 gave about +0.9 dB PSNR
        # and +0.045 silhouette IoU over Moore's 3.5, which over-saturates this small model's frames.
        card={"name": NAME, "native_size": [NATIVE_SIZE, NATIVE_SIZE], "from_scratch": True,
              "recommended": {"guidance_scale": RECOMMENDED_GUIDANCE_SCALE}},
    )
