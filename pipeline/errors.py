"""Errors the pipeline raises for bad input or missing weights, each with a sentence a user can act on."""


class GroundlabelError(ValueError):
    """Base class: the input or the setup is wrong, not the code."""


class ImageError(GroundlabelError):
    """The bytes are not a usable image (not an image, truncated, empty, or too large)."""


class PromptError(GroundlabelError):
    """The text prompt is empty or does not fit the text encoder."""


class WeightsError(GroundlabelError):
    """Model weights are missing or cannot be loaded; the message says how to provide them."""
