"""Choosing where and in which precision the models run."""

from __future__ import annotations

import torch

from .errors import InvalidInputError

_DTYPES = {
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, or (None or "auto") the best available one: CUDA, then Apple MPS, then the CPU."""
    if device is not None and device != "auto":
        try:
            return torch.device(device)
        except RuntimeError:
            raise InvalidInputError(f"unknown device {device!r}: use auto, cuda, mps or cpu") from None
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The requested dtype, or (None or "auto") fp16 on CUDA (as the weights were trained and released) and
    fp32 elsewhere."""
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise InvalidInputError(f"unknown dtype {dtype!r}: use one of {sorted(_DTYPES)}") from None
