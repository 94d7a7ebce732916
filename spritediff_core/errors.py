"""Errors that spritediff raises on purpose: each says what is wrong and what to do about it."""


class SpriteDiffError(Exception):
    """Base class of every error spritediff raises on purpose."""


class WeightsNotFoundError(SpriteDiffError, FileNotFoundError):
    """A file or folder of the model is missing."""


class WeightsMismatchError(SpriteDiffError, ValueError):
    """A checkpoint's keys or shapes do not fit the model the configuration describes."""


class UnsupportedConfigError(SpriteDiffError, ValueError):
    """A configuration asks for a model variant spritediff does not implement."""


class InvalidInputError(SpriteDiffError, ValueError):
    """Arguments to a generation are unusable (sizes, empty pose lists, bad output types...)."""


class GenerationCancelled(SpriteDiffError):
    """A generation was cancelled through `SpriteSheetPipeline.cancel()`."""


def first_line(error: BaseException) -> str:
    """A library exception as one line for a message (its first line, without torch's advice to turn the
    unpickling safety off)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return text.splitlines()[0].split(" Please file an issue")[0].split("(1) In PyTorch")[0].strip()
