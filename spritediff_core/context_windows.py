"""Context windows: which frames the UNet sees together when a sequence is longer than one window."""

from __future__ import annotations

from .errors import InvalidInputError


def context_windows(num_frames: int, context_frames: int = 24, overlap: int = 4, loop: bool = True) -> list[list[int]]:
    """Windows of frame indices covering every frame; predictions of overlapping windows are averaged.

    loop=True is the reference behaviour for cycles (walk, run): windows start at 0, stride
    (context_frames - overlap), and wrap round modulo num_frames, so the last frames also see the first.
    loop=False is for one-shots (jump, attack): windows stay inside [0, num_frames), the last one ending
    on the last frame, so the end of the motion never bleeds into its start.
    """
    if num_frames < 1:
        raise InvalidInputError("need at least one frame")
    if context_frames < 1:
        raise InvalidInputError(f"context_frames must be at least 1, got {context_frames}")
    if not 0 <= overlap < context_frames:
        raise InvalidInputError(f"context_overlap must be in [0, context_frames), got {overlap} for {context_frames}")
    if num_frames <= context_frames:
        return [list(range(num_frames))]
    stride = context_frames - overlap
    if loop:
        return [[i % num_frames for i in range(start, start + context_frames)]
                for start in range(0, num_frames, stride)]
    starts = list(range(0, num_frames - context_frames, stride)) + [num_frames - context_frames]
    return [list(range(start, start + context_frames)) for start in starts]
