"""Errors of the Label Studio layer, each with a sentence a user can act on (and never the token)."""

from __future__ import annotations


class SyncError(Exception):
    """Base class for everything that goes wrong between groundlabel and Label Studio."""


class RequestError(SyncError, ValueError):
    """A request to the ML backend is not what Label Studio sends: not a JSON object, or a field of the wrong shape."""


class ConfigError(SyncError, ValueError):
    """The project's labeling config lacks a tag groundlabel needs, or is not valid XML."""


class LabelStudioError(SyncError):
    """Label Studio answered with an error, or could not be reached. ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Worth trying again later: the server is down, overloaded or failing, not refusing the request."""
        return self.status is None or self.status == 429 or self.status >= 500


class AuthError(LabelStudioError):
    """The token was refused (401/403): wrong, expired, or a legacy token on a server that disabled them."""

    @property
    def retryable(self) -> bool:
        return False


class UnreachableError(LabelStudioError):
    """No HTTP answer at all: wrong URL, server stopped, network down, or a timeout."""


class DownloadError(SyncError):
    """A task's image could not be fetched: bad URL, refused host, timeout, or over the size limit."""
