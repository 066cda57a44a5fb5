"""Every failure a user can meet is a ``GroundlabelError`` whose message says what to do about it.

The classes say what went wrong, not where: the ML backend (``sync.errors.HTTP_STATUS``), the UI and the command
lines each turn them into one answer (an HTTP status, a message box, one line and exit code 2). Anything else that
escapes is a bug, and those boundaries log its traceback instead of showing it.
"""


class GroundlabelError(ValueError):
    """Base class: the input or the setup is wrong, not the code."""


class ImageError(GroundlabelError):
    """The bytes are not a usable image (not an image, truncated, empty, or too large)."""


class VideoError(GroundlabelError):
    """The bytes are not a usable video (not a video, no frames, truncated, frames too large)."""


class PromptError(GroundlabelError):
    """The text prompt is empty or does not fit the text encoder."""


class ExemplarError(PromptError):
    """An example box cannot be used: no area, off its image, or a detector that cannot search by example."""


class WeightsError(GroundlabelError):
    """Model weights are missing or cannot be loaded; the message says how to provide them."""


class SettingsError(GroundlabelError):
    """A setting names something that does not exist here: an unknown model, a device this machine lacks, a
    malformed number in the environment."""
