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
            chosen = torch.device(device)
        except RuntimeError:
            raise InvalidInputError(f"unknown device {device!r}: use auto, cuda, mps or cpu") from None
        check_device_available(chosen)
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device_available(device: torch.device) -> None:
    """A named device this machine (or this torch build) lacks is an error naming the setting, before any
    weights load."""
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise InvalidInputError(f"device {str(device)!r} is not available ({build}): use --device auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InvalidInputError(f"device {str(device)!r} is not available: this machine has "
                                f"{torch.cuda.device_count()} CUDA GPU(s)")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise InvalidInputError("device 'mps' is not available (Apple GPUs only): use --device auto or cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise InvalidInputError(f"device {str(device)!r} is not supported: use auto, cuda, mps or cpu")


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
