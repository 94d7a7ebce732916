"""Training samples from a dataset written by `python -m blender_addon dataset`, held in memory at the training
resolution.

Frames and reference pictures are composited onto black (the model draws on black, as the pipeline
flattens references) and resized as the pipeline resizes them. Pose images are drawn anew from each clip's
`poses.json` at the training resolution with the product's own drawing (`stroke_scale="auto"`, as the add-on
draws them for a generation of that size). Horizontal flips mirror the pictures and the keypoints, swapping
left and right, so pose colours keep meaning the same limbs.

Sampling is a pure function of a `torch.Generator`: the trainer seeds one per step from (seed, step), so a
resumed run draws exactly the samples an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..dataset import Dataset, load_dataset
from ..drawing import draw_pose_array
from ..errors import InvalidInputError
from ..pipeline import flatten_onto_black
from ..poses import PoseFrame, PoseSequence

# OpenPose COCO-18 indices after a horizontal mirror: right and left swap.
MIRRORED_BODY = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)
REFERENCE_VIEW_WEIGHTS = {"side": 0.4, "three_quarter": 0.3, "front": 0.3}
REFERENCE_PICTURE_RATE = 0.7  # else another frame of the same character is the reference (the recipe's way)


def mirrored(frame: PoseFrame) -> PoseFrame:
    def flip(points):
        if points is None:
            return None
        out = points.copy()
        out[:, 0] = np.where(out[:, 2] > 0, frame.canvas_width - out[:, 0], out[:, 0])
        return out

    body = flip(frame.body)[list(MIRRORED_BODY)]
    return PoseFrame(body, frame.canvas_width, frame.canvas_height, left_hand=flip(frame.right_hand),
                     right_hand=flip(frame.left_hand), face=flip(frame.face))


def load_picture(path: Path, size: int) -> tuple[np.ndarray, Image.Image]:
    """(size x size x 3 uint8 on black, the full-size picture on black for the image encoder)."""
    with Image.open(path) as image:
        flat = flatten_onto_black(image)
    small = flat.resize((size, size), Image.Resampling.LANCZOS) if flat.size != (size, size) else flat
    return np.asarray(small, dtype=np.uint8).copy(), flat


@dataclass
class ClipData:
    frames: np.ndarray  # (F, H, W, 3) uint8
    poses: np.ndarray  # (2, F, H, W, 3) uint8: as drawn, mirrored
    loop: bool


@dataclass
class CharacterData:
    name: str
    references: dict[str, np.ndarray]  # view -> (H, W, 3) uint8
    reference_pictures: dict[str, Image.Image]  # view -> picture at dataset size, for the image encoder
    clips: list[ClipData]


def _draw(frames, size: int) -> np.ndarray:
    return np.stack([draw_pose_array(f.scaled_to(size, size), stroke_scale="auto") for f in frames])


def load_characters(dataset: Dataset, size: int) -> list[CharacterData]:
    characters = []
    for character in dataset.characters:
        references, pictures = {}, {}
        for view, path in character.references.items():
            references[view], pictures[view] = load_picture(path, size)
        clips = []
        for clip in character.clips:
            sequence = PoseSequence.load(clip.poses_json)
            if len(sequence.frames) != len(clip.frame_paths):
                raise InvalidInputError(f"{clip.directory}: {len(sequence.frames)} poses for "
                                        f"{len(clip.frame_paths)} frames")
            frames = np.stack([load_picture(path, size)[0] for path in clip.frame_paths])
            poses = np.stack([_draw(sequence.frames, size), _draw([mirrored(f) for f in sequence.frames], size)])
            clips.append(ClipData(frames, poses, clip.loop))
        characters.append(CharacterData(character.name, references, pictures, clips))
    return characters


def to_tensor(images: np.ndarray, normalise: bool = True) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float in [-1, 1] (or [0, 1] with normalise=False)."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).float().div(255.0)
    tensor = tensor.movedim(-1, -3)
    return tensor * 2 - 1 if normalise else tensor


def _choice(generator: torch.Generator, count: int) -> int:
    return int(torch.randint(0, count, (1,), generator=generator))


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator))


def _crop_on_character(image: np.ndarray, size: int, generator: torch.Generator) -> np.ndarray:
    """A size x size window centred (as far as the borders allow) on a random non-black pixel. Sprites cover
    a fifth of their frame: on whole frames a VAE learns the black background and grey shapes first and
    needs thousands of CPU steps before colours come through; windows on the character carry the colour
    signal at a quarter of the cost."""
    height, width = image.shape[:2]
    ys, xs = np.nonzero(image.max(axis=-1) > 8)
    if len(ys):
        pick = _choice(generator, len(ys))
        cy, cx = int(ys[pick]), int(xs[pick])
    else:
        cy, cx = height // 2, width // 2
    top = min(max(cy - size // 2, 0), height - size)
    left = min(max(cx - size // 2, 0), width - size)
    return image[top:top + size, left:left + size]


@dataclass
class ImageBatch:
    """Stage 0: pictures in [-1, 1], (B, 3, H, W)."""

    pixels: torch.Tensor


@dataclass
class PoseBatch:
    """Stages 1 and 2: targets (B, 3, [F,] H, W) in [-1, 1], poses in [0, 1] alike, references (B, 3, H, W) in
    [-1, 1] and the references as pictures for the image encoder."""

    targets: torch.Tensor
    poses: torch.Tensor
    references: torch.Tensor
    reference_pictures: list[Image.Image]


class TrainingSet:
    def __init__(self, path: str | Path, size: int) -> None:
        self.dataset = load_dataset(path)
        self.size = size
        self.characters = load_characters(self.dataset, size)
        self.frame_count = sum(len(c.frames) for ch in self.characters for c in ch.clips)

    def _reference(self, character: CharacterData, generator: torch.Generator, avoid_clip: int
                   ) -> tuple[np.ndarray, Image.Image]:
        views = [v for v in REFERENCE_VIEW_WEIGHTS if v in character.references]
        others = [i for i in range(len(character.clips)) if i != avoid_clip]
        if views and (not others or _uniform(generator) < REFERENCE_PICTURE_RATE):
            weights = torch.tensor([REFERENCE_VIEW_WEIGHTS[v] for v in views])
            view = views[int(torch.multinomial(weights, 1, generator=generator))]
            return character.references[view], character.reference_pictures[view]
        clip = character.clips[others[_choice(generator, len(others))] if others else avoid_clip]
        frame = clip.frames[_choice(generator, len(clip.frames))]
        return frame, Image.fromarray(frame)

    def image_batch(self, batch_size: int, generator: torch.Generator, crop: int | None = None) -> ImageBatch:
        """Pictures (20% reference views, else clip frames), half of them mirrored; with `crop`, a crop x crop
        window around a random foreground pixel of each (see `_crop_on_character`)."""
        pictures = []
        for _ in range(batch_size):
            character = self.characters[_choice(generator, len(self.characters))]
            if _uniform(generator) < 0.2 and character.references:
                views = sorted(character.references)
                image = character.references[views[_choice(generator, len(views))]]
            else:
                clip = character.clips[_choice(generator, len(character.clips))]
                image = clip.frames[_choice(generator, len(clip.frames))]
            image = image[:, ::-1] if _uniform(generator) < 0.5 else image
            pictures.append(image if crop is None else _crop_on_character(image, crop, generator))
        return ImageBatch(to_tensor(np.stack(pictures)))

    def pose_batch(self, batch_size: int, generator: torch.Generator, frames: int | None = None) -> PoseBatch:
        """`frames=None`: single frames (stage 1); else clips of up to `frames` consecutive frames (stage 2),
        one length for the whole batch (the shortest clip drawn sets it)."""
        chosen = []
        for _ in range(batch_size):
            character = self.characters[_choice(generator, len(self.characters))]
            clip_index = _choice(generator, len(character.clips))
            chosen.append((character, clip_index))
        length = None if frames is None else min([frames] + [len(ch.clips[i].frames) for ch, i in chosen])
        targets, poses, references, pictures = [], [], [], []
        for character, clip_index in chosen:
            clip = character.clips[clip_index]
            count = len(clip.frames)
            if length is None:
                indices = [_choice(generator, count)]
            else:
                start = _choice(generator, count if clip.loop else count - length + 1)
                indices = [(start + i) % count for i in range(length)]
            reference, picture = self._reference(character, generator, clip_index)
            flip = _uniform(generator) < 0.5
            target, pose = clip.frames[indices], clip.poses[int(flip)][indices]
            if flip:
                target, reference = target[:, :, ::-1], reference[:, ::-1]
                picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            targets.append(target)
            poses.append(pose)
            references.append(reference)
            pictures.append(picture)
        target_tensor = to_tensor(np.stack(targets))  # (B, F, 3, H, W)
        pose_tensor = to_tensor(np.stack(poses), normalise=False)
        if length is None:
            target_tensor, pose_tensor = target_tensor[:, 0], pose_tensor[:, 0]
        else:  # (B, 3, F, H, W), as the motion UNet takes clips
            target_tensor, pose_tensor = target_tensor.transpose(1, 2), pose_tensor.transpose(1, 2)
        return PoseBatch(target_tensor, pose_tensor, to_tensor(np.stack(references)), pictures)
