"""Reference attention (Animate Anyone's ReferenceNet) through diffusers attention processors.

The ReferenceNet runs once on the reference picture; in each of its spatial transformer blocks the input of
self-attention (the output of `norm1`) is recorded. In the denoising UNet, the block of the same name lets its
self-attention keys and values see [its own tokens, the reference tokens], so every frame copies appearance
from the picture. The unconditional half of classifier-free guidance keeps plain self-attention, as the weights
were trained.

State lives in a `ReferenceBank` owned by one pipeline and filled for one call only, so two pipelines in one
process never see each other's reference.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from ..errors import SpriteDiffError


REFERENCE_STATE_DTYPE = torch.float16


class ReferenceBank:
    """The reference tokens recorded by one ReferenceNet pass, keyed by attention-layer name."""

    def __init__(self) -> None:
        self.states: dict[str, torch.Tensor] = {}
        self.recording = False
        self.classifier_free_guidance = False

    @contextmanager
    def recording_pass(self) -> Iterator[None]:
        self.states.clear()
        self.recording = True
        try:
            yield
        finally:
            self.recording = False

    @contextmanager
    def active(self, classifier_free_guidance: bool) -> Iterator[None]:
        """Keep the recorded states for the duration of a generation, then drop them."""
        self.classifier_free_guidance = classifier_free_guidance
        try:
            yield
        finally:
            self.states.clear()


class ReferenceWriteProcessor:
    """Self-attention that also records its input into the bank (ReferenceNet side)."""

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        self.bank, self.name = bank, name
        self.attend = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None) -> torch.Tensor:
        if self.bank.recording:
            # The reference implementation hands the states over in float16 whatever the model's dtype
            # (Moore's ReferenceAttentionControl.update); the weights saw that rounding, so keep it.
            self.bank.states[self.name] = hidden_states.to(REFERENCE_STATE_DTYPE)
        return self.attend(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceReadProcessor:
    """Self-attention whose keys/values also cover the recorded reference tokens (denoising UNet side).

    Rows of `hidden_states` are (batch x frames) folded, frame-major; with classifier-free guidance the first
    half of the rows is the unconditional half and attends to itself only.
    """

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        self.bank, self.name = bank, name
        self.attend = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None) -> torch.Tensor:
        reference = self.bank.states.get(self.name)
        if reference is None:
            raise SpriteDiffError(
                f"reference attention {self.name}: no ReferenceNet states recorded; run the ReferenceNet first"
            )
        rows = hidden_states.shape[0]
        unconditional = rows // 2 if self.bank.classifier_free_guidance else 0
        conditional = hidden_states[unconditional:]
        reference_tokens = reference.to(conditional.dtype).expand(conditional.shape[0], -1, -1)
        with_reference = torch.cat([conditional, reference_tokens], dim=1)
        out = self.attend(attn, conditional, with_reference, attention_mask, temb)
        if unconditional == 0:
            return out
        plain = self.attend(attn, hidden_states[:unconditional], None, attention_mask, temb)
        return torch.cat([plain, out], dim=0)


def _spatial_self_attention_names(unet: torch.nn.Module) -> list[str]:
    """Names of attn1 in the spatial transformer blocks (not in motion modules)."""
    return [
        name
        for name, module in unet.named_modules()
        if isinstance(module, Attention) and name.endswith(".attn1") and ".motion_modules." not in name
    ]


def install_reference_attention(reference_unet: torch.nn.Module, denoising_unet: torch.nn.Module,
                                bank: ReferenceBank) -> None:
    """Pair each spatial self-attention of the denoising UNet with the ReferenceNet's layer of the same name."""
    writers = _spatial_self_attention_names(reference_unet)
    readers = _spatial_self_attention_names(denoising_unet)
    if sorted(writers) != sorted(readers):
        raise SpriteDiffError(
            "the ReferenceNet and the denoising UNet have different transformer blocks: "
            f"only in the ReferenceNet {sorted(set(writers) - set(readers))}, "
            f"only in the denoising UNet {sorted(set(readers) - set(writers))}"
        )
    modules = dict(reference_unet.named_modules())
    for name in writers:
        modules[name].set_processor(ReferenceWriteProcessor(bank, name))
    modules = dict(denoising_unet.named_modules())
    for name in readers:
        modules[name].set_processor(ReferenceReadProcessor(bank, name))
