"""Errors of the Label Studio layer, each with a sentence a user can act on (and never the token), and the one
table that turns any groundlabel error into an HTTP answer.

``SyncError`` is a ``GroundlabelError``: the UI and the command lines show every one of them as its message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from pipeline import GroundlabelError, ImageError, PromptError, SettingsError, WeightsError


class SyncError(GroundlabelError):
    """Base class for everything that goes wrong between groundlabel and Label Studio."""


class RequestError(SyncError):
    """A request to the ML backend is not what Label Studio sends: not a JSON object, or a field of the wrong shape."""


class ConfigError(SyncError):
    """The project's labeling config lacks a tag groundlabel needs, or is not valid XML."""


class LabelStudioError(SyncError):
    """Label Studio answered with an error, or could not be reached. ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.status = status
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        """Worth trying again later: the server is down, overloaded or failing, not refusing the request (a URL
        that can never work says so with ``retryable=False``)."""
        if self._retryable is not None:
            return self._retryable
        return self.status is None or self.status == 429 or self.status >= 500


class AuthError(LabelStudioError):
    """The token was refused (401/403): wrong, expired, or a legacy token on a server that disabled them."""

    @property
    def retryable(self) -> bool:
        return False


class UnreachableError(LabelStudioError):
    """No HTTP answer at all: wrong URL, server stopped, network down, or a timeout."""


class DownloadError(SyncError):
    """A task's image could not be fetched. ``retryable``: it may work later (timeout, host down, 5xx, 429), so
    nothing is stored for it; otherwise (404, refused URL, too large) the failure is permanent."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class TrainingDataError(SyncError):
    """A project's annotations cannot train a detector: none submitted, none with a label of the config, no image
    that decodes, or an output directory that holds another project's fine-tune."""


T = TypeVar("T")
log = logging.getLogger(__name__)


def with_retries(
    call: Callable[[], T], attempts: int = 3, backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep
) -> T:
    """``call()``, tried up to ``attempts`` times while it fails with a ``LabelStudioError`` that is ``retryable``
    (a timeout, Label Studio down, 5xx, 429), ``backoff`` seconds doubling between tries; then its last error."""
    for attempt in range(1, max(1, attempts)):
        try:
            return call()
        except LabelStudioError as error:
            if not error.retryable:
                raise
            log.warning("%s Trying again (%d of %d).", error, attempt + 1, attempts)
        sleep(backoff * 2 ** (attempt - 1))
    return call()


# The one mapping from groundlabel's errors to HTTP answers of the ML backend (first match wins; the UI and the
# command lines show the message of any GroundlabelError instead).
HTTP_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (RequestError, 400),
    (ConfigError, 400),
    (PromptError, 400),
    (ImageError, 400),
    (SettingsError, 400),
    (WeightsError, 503),
    (AuthError, 502),
    (LabelStudioError, 502),
    (DownloadError, 502),
    (GroundlabelError, 400),
)


def http_status(error: Exception) -> int | None:
    """The HTTP status for ``error``; None for an error that is not groundlabel's (a bug: answer 500 and log it)."""
    return next((status for kind, status in HTTP_STATUS if isinstance(error, kind)), None)
