"""3x3 convolutions on the CPU by Winograd's minimal filtering (NNPACK's F(6x6, 3x3) kernels, built into
PyTorch): the same float32 sums, regrouped so each 6x6 output tile costs 64 multiplications per channel pair
instead of 324, with rounding differences of about 1e-5 of the layer's output scale.

Why: oneDNN, which runs torch's CPU convolutions, has no Winograd kernels on x86 any more, and the VAE decode is
half of a generation on the CPU. On a 2-core AMD EPYC (AVX-512, one thread), SD's real-size VAE decoded a
256x256 frame in 3.2 s instead of 5.8 s (upsampling by phases on in both), 6.4e-5 from the direct result on
outputs in [-2.3, 1.9], at the same peak memory; the denoising UNet's 32x32 and 16x16 layers ran about 2x
faster. Tiles waste work on small pictures: below 16x16 outputs (8x8: 0.83x, 4x4: 0.5x) torch's own
convolution stays.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..devices import release_freed_host_memory
from .layer_swaps import swap_layers

# Output pixels per picture below which torch's direct convolution measured faster (16x16 and larger: faster).
MINIMUM_PIXELS = 16 * 16
# Input bytes per NNPACK call at most (larger pictures go in bands of rows).
BAND_BYTES = 8 * 2**20
# Outputs from this size on hand the bands' freed temporaries back to the system.
TRIM_BYTES = 32 * 2**20


@functools.cache
def winograd_available() -> bool:
    """Whether this torch build has NNPACK and it started on this CPU (it needs AVX2 on x86). The check is also
    what initialises NNPACK: its convolution fails until it has run."""
    backend = getattr(torch.backends, "nnpack", None)
    return (backend is not None and hasattr(torch, "_nnpack_spatial_convolution")
            and bool(backend.is_available()))


def _layer_qualifies(conv: torch.nn.Module) -> bool:
    return (type(conv) is torch.nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and conv.padding in ((1, 1), (0, 0)))


def winograd_applies(hidden_states: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int],
                     upsampled: int = 1) -> bool:
    """Whether a 3x3 convolution of `hidden_states` (upsampled this many times first) goes to NNPACK."""
    height, width = upsampled * hidden_states.shape[-2], upsampled * hidden_states.shape[-1]
    return (hidden_states.ndim == 4 and hidden_states.device.type == "cpu" and hidden_states.dtype == torch.float32
            and weight.dtype == torch.float32 and weight.shape[-2:] == (3, 3)
            and (height + 2 * padding[0] - 2) * (width + 2 * padding[1] - 2) >= MINIMUM_PIXELS
            and not (torch.is_grad_enabled() and (hidden_states.requires_grad or weight.requires_grad))
            and winograd_available())


def _band_rows(hidden_states: torch.Tensor, width: int) -> int:
    batch, channels = hidden_states.shape[:2]
    return max(4, BAND_BYTES // (hidden_states.element_size() * batch * channels * width))


def convolve_3x3(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 padding: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """A stride-1 3x3 convolution: NNPACK's Winograd kernels where the call suits them (float32 on the CPU, no
    gradient wanted, outputs of at least MINIMUM_PIXELS), else torch's own."""
    if not winograd_applies(hidden_states, weight, padding):
        return F.conv2d(hidden_states, weight, bias, padding=padding)
    height, width = hidden_states.shape[-2:]
    # NNPACK keeps a workspace of about twice its largest input for good: large pictures go in bands of rows
    # (each with the row above and below it), so that workspace stays small.
    band = _band_rows(hidden_states, width)
    if band >= height or padding != (1, 1):
        return torch._nnpack_spatial_convolution(hidden_states, weight, bias, list(padding))
    return _in_bands(lambda first, last: hidden_states[:, :, first:last], hidden_states, weight, bias, band)


def upsample_nearest_2x_then_convolve_3x3(hidden_states: torch.Tensor, weight: torch.Tensor,
                                          bias: torch.Tensor | None) -> torch.Tensor:
    """Nearest x2 upsampling then a stride-1 3x3 convolution (padding 1) by Winograd, band by band: the
    upsampled picture is never held whole. Only where `winograd_applies` to the upsampled size."""
    width = 2 * hidden_states.shape[-1]

    def upsampled_rows(first: int, last: int) -> torch.Tensor:  # rows first..last-1 of the upsampled picture
        small = hidden_states[:, :, first // 2:(last + 1) // 2]
        return F.interpolate(small, scale_factor=2.0, mode="nearest")[:, :, first % 2:first % 2 + last - first]

    return _in_bands(upsampled_rows, hidden_states, weight, bias, _band_rows(hidden_states, width), upsampled=2)


def _in_bands(rows, hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, band: int,
              upsampled: int = 1) -> torch.Tensor:
    """A padding-1 3x3 convolution of `hidden_states` (upsampled this many times), computed `band` output rows
    at a time from `rows(first, last)` (its input's rows first..last-1), each band read with the rows beside."""
    batch, height, width = hidden_states.shape[0], *(upsampled * size for size in hidden_states.shape[-2:])
    out = hidden_states.new_empty((batch, weight.shape[0], height, width))
    for top in range(0, height, band):
        bottom = min(height, top + band)
        first, last = max(top - 1, 0), min(bottom + 1, height)
        part = torch._nnpack_spatial_convolution(rows(first, last), weight, bias, [1, 1])
        out[:, :, top:bottom] = part[:, :, top - first:top - first + bottom - top]
        del part
    # The bands' temporaries (a few MB each) land on glibc's heap, which keeps them. Handed back after each of
    # the largest pictures (the VAE's last levels), a 256 px decode's peak stayed at torch's own convolutions'
    # (about 75 MB lower than keeping them) for about 6% of its time; after every banded layer it cost 15%.
    if out.numel() * out.element_size() >= TRIM_BYTES:
        release_freed_host_memory()
    return out


class WinogradConv2d(torch.nn.Conv2d):
    """torch's Conv2d with the same parameters (so the same state-dict keys), computed by NNPACK while
    `winograd` is on and the call suits it: float32 on the CPU, no gradient wanted, outputs of at least
    MINIMUM_PIXELS. Otherwise torch's own convolution."""

    def __init__(self, original: torch.nn.Conv2d) -> None:
        super().__init__(original.in_channels, original.out_channels, original.kernel_size,
                         stride=original.stride, padding=original.padding, dilation=original.dilation,
                         groups=original.groups, bias=original.bias is not None,
                         padding_mode=original.padding_mode, device="meta")
        self.weight = original.weight
        self.bias = original.bias
        self.winograd = False

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.winograd:
            return super().forward(hidden_states)
        return convolve_3x3(hidden_states, self.weight, self.bias, self.padding)


def install_winograd_convolutions(model: torch.nn.Module) -> int:
    """Swap every plain 3x3, stride-1 Conv2d under `model` for a WinogradConv2d holding the same parameters
    (off until `set_winograd_convolutions` turns it on); how many."""
    return swap_layers(model, _layer_qualifies, WinogradConv2d)


def set_winograd_convolutions(model: torch.nn.Module, enabled: bool) -> None:
    for module in model.modules():
        if isinstance(module, WinogradConv2d):
            module.winograd = enabled
