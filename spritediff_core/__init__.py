"""spritediff core: pose drawing, the Animate Anyone diffusion pipeline, atlases. Never imports bpy."""

from .errors import (
    GenerationCancelled,
    InvalidInputError,
    SpriteDiffError,
    UnsupportedConfigError,
    WeightsMismatchError,
    WeightsNotFoundError,
)
from .settings import GenerationSettings, PackingSettings, RuntimeSettings, SamplingSettings

__all__ = [
    "GenerationCancelled",
    "GenerationSettings",
    "InvalidInputError",
    "PackingSettings",
    "RuntimeSettings",
    "SamplingSettings",
    "SpriteDiffError",
    "SpriteSheetPipeline",
    "UnsupportedConfigError",
    "WeightsMismatchError",
    "WeightsNotFoundError",
]
__version__ = "0.1.0"


def __getattr__(name):
    # The pipeline pulls in torch and diffusers; import it only when asked for.
    if name == "SpriteSheetPipeline":
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
