"""Swapping layers inside a model for subclasses that compute the same thing another way."""

from __future__ import annotations

from collections.abc import Callable

import torch


def swap_layers(model: torch.nn.Module, qualifies: Callable[[torch.nn.Module], bool],
                replacement: Callable[[torch.nn.Module], torch.nn.Module]) -> int:
    """Replace every layer under `model` that `qualifies` by `replacement(layer)`, in place; how many."""
    swapped = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if qualifies(child):
                setattr(module, child_name, replacement(child))
                swapped += 1
    return swapped
