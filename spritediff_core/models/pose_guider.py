"""Animate Anyone's PoseGuider: a small conv net that turns pose images into features at latent resolution.

Its maths and parameter names are those of diffusers' `ControlNetConditioningEmbedding`; only the channel
widths differ between checkpoints, so they are read from the checkpoint's shapes.
"""

from __future__ import annotations

from typing import Mapping

import torch
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding

from ..errors import WeightsMismatchError
from ..weights import load_checked


def build_pose_guider(state: Mapping[str, torch.Tensor], source: str, embedding_channels: int) -> torch.nn.Module:
    """A PoseGuider shaped like the checkpoint, loaded from it, emitting `embedding_channels` features."""
    try:
        widths = [state["conv_in.weight"].shape[0]]
        index = 1
        while f"blocks.{index}.weight" in state:
            widths.append(state[f"blocks.{index}.weight"].shape[0])
            index += 2
        conditioning_channels = state["conv_in.weight"].shape[1]
    except KeyError as missing:
        raise WeightsMismatchError(
            f"{source}: missing key {missing.args[0]!r}; not a PoseGuider checkpoint "
            "(expected conv_in, blocks.0..N and conv_out)"
        ) from None
    guider = ControlNetConditioningEmbedding(embedding_channels, conditioning_channels, tuple(widths))
    load_checked(guider, state, source)
    return guider.eval().requires_grad_(False)
