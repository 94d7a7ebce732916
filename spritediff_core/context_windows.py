"""Context windows: which frames the UNet sees together at one denoising step.

Three behaviours, chosen by the sequence (cycle or one-shot) and the loop mode:
- one-shot (jump, attack): windows stay inside [0, num_frames), so the end never bleeds into the start;
- cycle, `loop_mode="reference"`: the reference implementation's windows, the same at every step: start at 0,
  stride (context_frames - overlap), wrap round modulo num_frames. A cycle that fits in one window is one
  window [0 .. n-1] in order, so the motion module never sees the last frame beside the first;
- cycle, `loop_mode="closed"`: the same circular windows, rotated by a different offset at each step
  (`closed_loop_shift`). Over the steps every pair of neighbours, the last and the first included, sits
  side by side in a window, also when the whole cycle fits in one window; the frames are put back in order
  when the predictions are gathered (they are indexed by frame, not by position).
"""

from __future__ import annotations

from .errors import InvalidInputError

LOOP_MODES = ("closed", "reference")


def check_window_settings(context_frames: int, overlap: int) -> None:
    if context_frames < 1:
        raise InvalidInputError(f"context_frames must be at least 1, got {context_frames}")
    if not 0 <= overlap < context_frames:
        raise InvalidInputError(f"context_overlap must be in [0, context_frames), got {overlap} for {context_frames}")


def context_windows(num_frames: int, context_frames: int = 24, overlap: int = 4, loop: bool = True,
                    shift: int = 0) -> list[list[int]]:
    """Windows of frame indices covering every frame; predictions of overlapping windows are averaged.

    loop=True: circular windows starting at `shift`, `shift + stride`, ... (modulo num_frames), each wrapping
    round; shift 0 is the reference behaviour. loop=False: windows inside [0, num_frames), the last one
    ending on the last frame (`shift` must be 0: a one-shot never wraps).
    """
    if num_frames < 1:
        raise InvalidInputError("need at least one frame")
    check_window_settings(context_frames, overlap)
    if not loop:
        if shift:
            raise InvalidInputError("a one-shot's windows cannot be shifted: only cycles wrap round")
        if num_frames <= context_frames:
            return [list(range(num_frames))]
        stride = context_frames - overlap
        starts = list(range(0, num_frames - context_frames, stride)) + [num_frames - context_frames]
        return [list(range(start, start + context_frames)) for start in starts]
    length = min(num_frames, context_frames)
    stride = context_frames - overlap if num_frames > context_frames else num_frames
    return [[(shift + start + i) % num_frames for i in range(length)] for start in range(0, num_frames, stride)]


def closed_loop_shift(step_index: int, num_frames: int) -> int:
    """The rotation of a cycle's windows at denoising step `step_index` in closed-loop mode: one frame further
    at each step, so the seam between the windows' ends visits every pair of neighbours in turn."""
    return step_index % num_frames


def step_windows(step_index: int, num_frames: int, context_frames: int, overlap: int, loop: bool,
                 loop_mode: str) -> list[list[int]]:
    """The windows of one denoising step for a sequence, as the loop mode asks."""
    if loop_mode not in LOOP_MODES:
        raise InvalidInputError(f"loop_mode must be one of {', '.join(LOOP_MODES)}, got {loop_mode!r}")
    shift = closed_loop_shift(step_index, num_frames) if loop and loop_mode == "closed" else 0
    return context_windows(num_frames, context_frames, overlap, loop, shift)
