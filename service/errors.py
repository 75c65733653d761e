"""The service's exception tree. Mapped to exit codes (CLI) and HTTP statuses (API) in one
place each; library code raises these with messages a user can act on."""
from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""

    code = "internal_error"


class BadInputError(ServiceError):
    """The caller's input is unusable (CLI exit code 2, HTTP 422)."""

    code = "bad_input"


class MediaError(BadInputError):
    """A media file is missing, unreadable, not audio/video, or empty."""

    code = "bad_media"


class NoFaceError(BadInputError):
    """No face was found in any sampled frame."""

    code = "no_face"
