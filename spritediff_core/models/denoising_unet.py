"""The 3D denoising UNet of Animate Anyone: SD1.5's UNet per frame, AnimateDiff motion modules between.

Built on diffusers' `UNetMotionModel`, whose block layout is Moore-AnimateAnyone's (motion module after each
resnet/attention pair, and between attention and resnet 1 in the mid block). Two differences are made
with ordinary module composition, not by patching library code:
- the motion modules' GroupNorm normalises each frame on its own (`FrameWiseGroupNorm`), as in the weights'
  training code; diffusers' own motion module normalises across all frames;
- pose features are added to the output of `conv_in` by a forward hook held only during one call
  (`pose_conditioning`).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import torch
from diffusers import UNetMotionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

from ..errors import UnsupportedConfigError
from ..weights import check_state_dict


class FrameWiseGroupNorm(torch.nn.GroupNorm):
    """GroupNorm over (batch, channels, frames, height, width) that normalises every frame separately."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if hidden_states.ndim != 5:
            return super().forward(hidden_states)
        batch, channels, frames, height, width = hidden_states.shape
        per_frame = hidden_states.transpose(1, 2).reshape(batch * frames, channels, height, width)
        normed = super().forward(per_frame)
        return normed.reshape(batch, frames, channels, height, width).transpose(1, 2)


def _swap_in_framewise_norms(unet: UNetMotionModel) -> None:
    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            old = module.norm
            module.norm = FrameWiseGroupNorm(old.num_groups, old.num_channels, eps=old.eps, affine=old.affine)


def _check_motion_settings(kwargs: Mapping[str, Any], num_blocks: int) -> dict[str, Any]:
    """Map Moore's `unet_additional_kwargs` onto UNetMotionModel settings; refuse what we do not implement."""

    def need(key: str, wanted: Any, actual: Any) -> None:
        if actual != wanted:
            raise UnsupportedConfigError(
                f"inference config: unet_additional_kwargs.{key} = {actual!r} is not supported "
                f"(spritediff implements {wanted!r}, the setting of Moore-AnimateAnyone's released weights)"
            )

    need("use_motion_module", True, kwargs.get("use_motion_module"))
    need("use_inflated_groupnorm", True, kwargs.get("use_inflated_groupnorm"))
    need("unet_use_cross_frame_attention", False, bool(kwargs.get("unet_use_cross_frame_attention")))
    need("unet_use_temporal_attention", False, bool(kwargs.get("unet_use_temporal_attention")))
    need("motion_module_type", "Vanilla", kwargs.get("motion_module_type"))
    need("motion_module_decoder_only", False, bool(kwargs.get("motion_module_decoder_only")))
    resolutions = set(kwargs.get("motion_module_resolutions") or [])
    needed = {2**i for i in range(num_blocks)}
    if not needed <= resolutions:
        need("motion_module_resolutions", sorted(needed), sorted(resolutions))
    motion = kwargs.get("motion_module_kwargs") or {}
    need("motion_module_kwargs.attention_block_types", ["Temporal_Self", "Temporal_Self"],
         list(motion.get("attention_block_types", [])))
    need("motion_module_kwargs.temporal_position_encoding", True, motion.get("temporal_position_encoding"))
    need("motion_module_kwargs.temporal_attention_dim_div", 1, motion.get("temporal_attention_dim_div", 1))
    return {
        "motion_num_attention_heads": int(motion["num_attention_heads"]),
        "motion_max_seq_length": int(motion.get("temporal_position_encoding_max_len", 32)),
        "temporal_transformer_layers_per_block": int(motion.get("num_transformer_block", 1)),
        "temporal_transformer_layers_per_mid_block": int(motion.get("num_transformer_block", 1)),
        "use_motion_mid_block": bool(kwargs.get("motion_module_mid_block", True)),
    }


def motion_config_from_unet2d(unet_config: Mapping[str, Any], unet_additional_kwargs: Mapping[str, Any]) -> dict:
    """A UNetMotionModel config equal to SD1.5's UNet config plus Moore's motion-module settings."""
    config = {key: value for key, value in unet_config.items() if not key.startswith("_")}
    config["down_block_types"] = [
        "CrossAttnDownBlockMotion" if "CrossAttn" in kind else "DownBlockMotion"
        for kind in config["down_block_types"]
    ]
    config["up_block_types"] = [
        "CrossAttnUpBlockMotion" if "CrossAttn" in kind else "UpBlockMotion" for kind in config["up_block_types"]
    ]
    # SD1.5's config names the number of heads `attention_head_dim` (a historical diffusers quirk).
    if not config.get("num_attention_heads"):
        config["num_attention_heads"] = config["attention_head_dim"]
    config.update(_check_motion_settings(unet_additional_kwargs, len(config["down_block_types"])))
    accepted = set(UNetMotionModel._get_signature_keys(UNetMotionModel)[0]) | set(
        UNetMotionModel._get_signature_keys(UNetMotionModel)[1]
    )
    return {key: value for key, value in config.items() if key in accepted}


def build_denoising_unet(unet_config: Mapping[str, Any], unet_additional_kwargs: Mapping[str, Any]) -> UNetMotionModel:
    unet = UNetMotionModel.from_config(motion_config_from_unet2d(unet_config, unet_additional_kwargs))
    _swap_in_framewise_norms(unet)
    return unet.eval().requires_grad_(False)


# Moore/AnimateDiff motion-module names -> diffusers AnimateDiffTransformer3D names.
_MOTION_RENAMES = [
    (re.compile(r"\.temporal_transformer\."), "."),
    (re.compile(r"\.attention_blocks\.(\d+)\."), lambda m: f".attn{int(m.group(1)) + 1}."),
    (re.compile(r"\.norms\.(\d+)\."), lambda m: f".norm{int(m.group(1)) + 1}."),
    (re.compile(r"\.ff_norm\."), ".norm3."),
]
_POSITION_ENCODING = re.compile(r"\.attn\d+\.pos_encoder\.pe$")


def convert_motion_module_key(key: str) -> str:
    for pattern, replacement in _MOTION_RENAMES:
        key = pattern.sub(replacement, key)
    return key


def load_denoising_unet_weights(
    unet: UNetMotionModel,
    spatial: Mapping[str, torch.Tensor],
    spatial_name: str,
    motion: Mapping[str, torch.Tensor],
    motion_name: str,
) -> None:
    """Load Moore's `denoising_unet.pth` (spatial) and `motion_module.pth` (temporal) into `unet`.

    Each file is checked against its own half of the model, so an error names the file at fault.
    The motion module's position encodings are recomputed by diffusers (sinusoids, as AnimateDiff's);
    the file's copies must only have the configured length and width.
    """
    expected = unet.state_dict()
    motion_expected = {key: value for key, value in expected.items() if ".motion_modules." in key}
    spatial_expected = {key: value for key, value in expected.items() if key not in motion_expected}
    recomputed = {key for key in motion_expected if key.endswith(".pos_embed.pe")}

    converted, file_keys = {}, {}
    for key, tensor in motion.items():
        new_key = convert_motion_module_key(key)
        if _POSITION_ENCODING.search(new_key):
            target = re.sub(r"\.attn\d+\.pos_encoder\.pe$", ".pos_embed.pe", new_key)
            if target in recomputed and tensor.shape == motion_expected[target].shape:
                continue
            if target in recomputed and tensor.shape[-1] == motion_expected[target].shape[-1]:
                raise UnsupportedConfigError(
                    f"{motion_name}: {key!r} encodes {tensor.shape[1]} positions but the inference config "
                    f"says {motion_expected[target].shape[1]} (temporal_position_encoding_max_len)"
                )
        converted[new_key] = tensor
        file_keys[new_key] = key

    to_load = check_state_dict(spatial_expected, spatial, spatial_name)
    to_load.update(
        check_state_dict(motion_expected, converted, motion_name, recomputed=recomputed, file_keys=file_keys)
    )
    to_load.update({key: expected[key] for key in recomputed})
    unet.load_state_dict(to_load, strict=True)


@contextmanager
def pose_conditioning(unet: UNetMotionModel, pose_features: torch.Tensor) -> Iterator[None]:
    """Add pose features (batch, channels, frames, h, w) to `conv_in`'s output while the block runs."""
    batch, channels, frames, height, width = pose_features.shape
    folded = pose_features.transpose(1, 2).reshape(batch * frames, channels, height, width)

    def add_pose(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output + folded

    handle = unet.conv_in.register_forward_hook(add_pose)
    try:
        yield
    finally:
        handle.remove()
