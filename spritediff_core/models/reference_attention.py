"""Reference attention (Animate Anyone's ReferenceNet) through diffusers attention processors.

The ReferenceNet runs once on the reference picture; in each of its spatial transformer blocks the input of
self-attention (the output of `norm1`) is recorded. In the denoising UNet, the block of the same name lets its
self-attention keys and values see [its own tokens, the reference tokens], so every frame copies appearance
from the picture. The unconditional half of classifier-free guidance keeps plain self-attention, as the weights
were trained.

Exact-maths speedups over the reference implementation (`RunSettings.exact_speedups`, on by default):
- the reference tokens are projected to keys and values once per layer and generation, and shared by every
  step and frame (the reference implementation repeats the states once per frame and projects them again at
  every step);
- the unconditional rows never compute a reference attention (the reference computes it, then discards it);
- the cross-attention to the image embedding, a single token, is to_out(to_v(token)) for every query (a
  softmax over one key is 1): no query or key projections, no attention.
With the speedups off the reference implementation's order of work is followed, for benchmarks.

State lives in a `ReferenceBank` owned by one pipeline and filled for one call only, so two pipelines in one
process never see each other's reference.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from ..errors import SpriteDiffError

# The reference implementation hands the states over in float16 whatever the model's dtype
# (Moore's ReferenceAttentionControl.update); the weights saw that rounding, so keep it.
REFERENCE_STATE_DTYPE = torch.float16


@dataclass
class RunSettings:
    """Per-generation switches the attention processors read."""

    exact_speedups: bool = True
    attention_chunk_size: int | None = None  # rows (frames x samples) per attention call; None: all at once


class ReferenceBank:
    """The reference tokens recorded by one ReferenceNet pass, keyed by attention-layer name, plus the
    per-call state every processor of one pipeline shares."""

    def __init__(self) -> None:
        self.states: dict[str, torch.Tensor] = {}
        self.keys_values: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.recording = False
        self.settings = RunSettings()
        self.unconditional_samples = 0  # leading samples of the current UNet call that are unconditional
        self.samples = 1

    @contextmanager
    def recording_pass(self) -> Iterator[None]:
        self.states.clear()
        self.keys_values.clear()
        self.recording = True
        try:
            yield
        finally:
            self.recording = False

    @contextmanager
    def active(self, settings: RunSettings | None = None) -> Iterator[None]:
        """Keep the recorded states for the duration of a generation, then drop them."""
        self.settings = settings or RunSettings()
        try:
            yield
        finally:
            self.states.clear()
            self.keys_values.clear()
            self.settings = RunSettings()

    @contextmanager
    def unet_call(self, *, unconditional_samples: int, samples: int) -> Iterator[None]:
        """Which leading samples of the next denoising-UNet call are the unconditional half."""
        self.unconditional_samples, self.samples = unconditional_samples, samples
        try:
            yield
        finally:
            self.unconditional_samples, self.samples = 0, 1

    def unconditional_rows(self, rows: int) -> int:
        return rows * self.unconditional_samples // self.samples


def _chunked(function, hidden_states: torch.Tensor, chunk: int | None, *extra: torch.Tensor | None) -> torch.Tensor:
    """Run `function` over row chunks (rows are independent sequences: exact maths, less peak memory)."""
    rows = hidden_states.shape[0]
    if not chunk or rows <= chunk:
        return function(hidden_states, *extra)
    parts = []
    for start in range(0, rows, chunk):
        pieces = [e[start:start + chunk] if e is not None and e.shape[0] == rows else e for e in extra]
        parts.append(function(hidden_states[start:start + chunk], *pieces))
    return torch.cat(parts)


class ChunkedAttnProcessor:
    """diffusers' SDPA processor, optionally over row chunks (for the layers without reference attention)."""

    def __init__(self, bank: ReferenceBank) -> None:
        self.bank = bank
        self.attend = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None) -> torch.Tensor:
        return _chunked(lambda h, e: self.attend(attn, h, e, attention_mask, temb), hidden_states,
                        self.bank.settings.attention_chunk_size, encoder_hidden_states)


class ImageTokenCrossAttnProcessor:
    """Cross-attention to the image embedding, which is a single token. A softmax over one key is exactly 1,
    so every query gets the same output, to_out(to_v(token)): with the exact speedups that is what runs (no
    query or key projection, no attention over the frame's pixels) and is broadcast over the queries. Anything
    else (more tokens, a mask, speedups off) goes to diffusers' SDPA processor."""

    def __init__(self, bank: ReferenceBank) -> None:
        self.bank = bank
        self.general = ChunkedAttnProcessor(bank)

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None) -> torch.Tensor:
        if (not self.bank.settings.exact_speedups or encoder_hidden_states is None or hidden_states.ndim != 3
                or encoder_hidden_states.shape[1] != 1 or encoder_hidden_states.shape[0] != hidden_states.shape[0]
                or attention_mask is not None or attn.spatial_norm is not None or attn.group_norm is not None):
            return self.general(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        out = attn.to_out[1](attn.to_out[0](attn.to_v(encoder_hidden_states)))
        out = out.expand(-1, hidden_states.shape[1], -1)
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


class ReferenceWriteProcessor:
    """Self-attention that also records its input into the bank (ReferenceNet side)."""

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        self.bank, self.name = bank, name
        self.attend = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None) -> torch.Tensor:
        if self.bank.recording:
            self.bank.states[self.name] = hidden_states.to(REFERENCE_STATE_DTYPE)
        return self.attend(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceReadProcessor:
    """Self-attention whose keys/values also cover the recorded reference tokens (denoising UNet side).

    Rows of `hidden_states` are (samples x frames) folded, frame-major; the bank says how many leading
    samples are the unconditional half, which attends to itself only.
    """

    def __init__(self, bank: ReferenceBank, name: str) -> None:
        self.bank, self.name = bank, name
        self.attend = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None) -> torch.Tensor:
        unconditional = self.bank.unconditional_rows(hidden_states.shape[0])
        reference = self.bank.states.get(self.name)
        if reference is None and unconditional < hidden_states.shape[0]:
            raise SpriteDiffError(
                f"reference attention {self.name}: no ReferenceNet states recorded; run the ReferenceNet first"
            )
        reference = None if reference is None else reference.to(hidden_states.dtype)
        chunk = self.bank.settings.attention_chunk_size
        if not self.bank.settings.exact_speedups:
            return self._as_reference_implementation(attn, hidden_states, reference, unconditional, chunk)
        parts = []
        if unconditional:
            parts.append(_chunked(lambda h: self.attend(attn, h, None, None, temb), hidden_states[:unconditional],
                                  chunk))
        if unconditional < hidden_states.shape[0]:
            key_ref, value_ref = self._reference_keys_values(attn, reference)
            parts.append(_chunked(lambda h: self._attend_with_reference(attn, h, key_ref, value_ref),
                                  hidden_states[unconditional:], chunk))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _reference_keys_values(self, attn: Attention, reference: torch.Tensor):
        """to_k / to_v of the reference tokens, once per generation (shared by every step and frame)."""
        cached = self.bank.keys_values.get(self.name)
        if cached is None or cached[0].dtype != reference.dtype:
            cached = (attn.to_k(reference), attn.to_v(reference))
            self.bank.keys_values[self.name] = cached
        return cached

    @staticmethod
    def _attend_with_reference(attn: Attention, hidden_states: torch.Tensor, key_ref: torch.Tensor,
                               value_ref: torch.Tensor) -> torch.Tensor:
        """SDPA over keys/values [own tokens, reference tokens]; the same maths as projecting the
        concatenated states, since the projections act on each token alone."""
        rows = hidden_states.shape[0]
        if key_ref.shape[0] not in (1, rows):  # one reference per sample of a batch of clips (training)
            key_ref = key_ref.repeat_interleave(rows // key_ref.shape[0], dim=0)
            value_ref = value_ref.repeat_interleave(rows // value_ref.shape[0], dim=0)
        query = attn.to_q(hidden_states)
        key = torch.cat([attn.to_k(hidden_states), key_ref.expand(rows, -1, -1)], dim=1)
        value = torch.cat([attn.to_v(hidden_states), value_ref.expand(rows, -1, -1)], dim=1)
        head_dim = key.shape[-1] // attn.heads

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(rows, -1, attn.heads, head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(query), heads(key), heads(value), dropout_p=0.0,
                                             is_causal=False)
        out = out.transpose(1, 2).reshape(rows, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor

    def _as_reference_implementation(self, attn, hidden_states, reference, unconditional, chunk):
        """The reference implementation's work, for comparison: reference states repeated for every row and
        projected each time; the unconditional rows' reference attention computed, then replaced."""
        repeated = reference.expand(hidden_states.shape[0], -1, -1).contiguous()
        both = torch.cat([hidden_states, repeated], dim=1)
        out = _chunked(lambda h, e: self.attend(attn, h, e, None, None), hidden_states, chunk, both)
        if unconditional:
            plain = _chunked(lambda h: self.attend(attn, h, None, None, None), hidden_states[:unconditional], chunk)
            out = torch.cat([plain, out[unconditional:]])
        return out


def _self_attention_names(unet: torch.nn.Module) -> list[str]:
    """Names of attn1 in the spatial transformer blocks (not in motion modules)."""
    return [
        name
        for name, module in unet.named_modules()
        if isinstance(module, Attention) and name.endswith(".attn1") and ".motion_modules." not in name
    ]


def install_reference_attention(reference_unet: torch.nn.Module, denoising_unet: torch.nn.Module,
                                bank: ReferenceBank) -> None:
    """Pair each spatial self-attention of the denoising UNet with the ReferenceNet's layer of the same name;
    every other attention layer gets the (optionally chunked) SDPA processor."""
    writers = _self_attention_names(reference_unet)
    readers = _self_attention_names(denoising_unet)
    if sorted(writers) != sorted(readers):
        raise SpriteDiffError(
            "the ReferenceNet and the denoising UNet have different transformer blocks: "
            f"only in the ReferenceNet {sorted(set(writers) - set(readers))}, "
            f"only in the denoising UNet {sorted(set(readers) - set(writers))}"
        )
    for unet, special, make in ((reference_unet, set(writers), ReferenceWriteProcessor),
                                (denoising_unet, set(readers), ReferenceReadProcessor)):
        for name, module in unet.named_modules():
            if not isinstance(module, Attention):
                continue
            if name in special:
                module.set_processor(make(bank, name))
            elif name.endswith(".attn2") and ".motion_modules." not in name:  # the image embedding's cross-attention
                module.set_processor(ImageTokenCrossAttnProcessor(bank))
            else:
                module.set_processor(ChunkedAttnProcessor(bank))
