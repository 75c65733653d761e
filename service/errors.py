"""The service's one exception tree (DESIGN §10).

Every error the service raises on purpose derives from :class:`ServiceError` and carries a
stable ``code`` (what clients and external checks read) and an ``http_status``. Subclasses may
live with their layer (storage, tts, ...), but only two places map them: ``api/errors.py``
(HTTP) and ``service/commands/exit_codes.py`` (exit codes). Messages name what the caller sent
(its URI, its field), never a server path.

=============================  ========================  ======
class                          ``code``                  status
=============================  ========================  ======
``BadInputError``              ``invalid_request``       422
``MediaError``                 ``unsupported_media``     422
``NoFaceError``                ``no_face``               422
``NoAudioError``               ``no_audio``              422
``WebhookNotAllowedError``     ``webhook_not_allowed``   422
``InputTooLargeError``         ``input_too_large``       413
``NotFoundError``              ``not_found``             404
``BucketNotAllowedError``      ``bucket_not_allowed``    403
``UnauthorizedError``          ``unauthorized``          401
``ForbiddenError``             ``forbidden``             403
``ConflictError``              ``output_exists`` ...     409
``StorageDeniedError``         ``storage_denied``        502
``UnavailableError``           ``storage_unavailable``.. 503 + Retry-After
``ModelsUnavailableError``     ``models_unavailable``    503
``ServerBusyError``            ``server_busy``           503
``InterruptedJobError``        ``interrupted``           503
``ServiceError`` (ours)        ``internal_error``        500
=============================  ========================  ======
"""
from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service raises on purpose (500 unless a subclass says)."""

    code = "internal_error"
    http_status = 500


class BadInputError(ServiceError):
    """The caller's input is unusable (CLI exit code 2, HTTP 422)."""

    code = "invalid_request"
    http_status = 422


class MediaError(BadInputError):
    """A media file is missing, unreadable, not a supported format, or empty."""

    code = "unsupported_media"


class NoAudioError(MediaError):
    """The user video has no audio track (the voice is cloned from it)."""

    code = "no_audio"


class NoFaceError(BadInputError):
    """Too few sampled frames have a face."""

    code = "no_face"


class WebhookNotAllowedError(BadInputError):
    """A webhook URL that is not https or resolves to a private address."""

    code = "webhook_not_allowed"


class InputTooLargeError(BadInputError):
    """The input is larger than the configured limit."""

    code = "input_too_large"
    http_status = 413


class NotFoundError(ServiceError):
    """What the caller named does not exist (an object, a bucket, a job)."""

    code = "not_found"
    http_status = 404


class UnauthorizedError(ServiceError):
    """No API key, or an unknown one."""

    code = "unauthorized"
    http_status = 401


class ForbiddenError(ServiceError):
    """A known key that may not use this route."""

    code = "forbidden"
    http_status = 403


class BucketNotAllowedError(ForbiddenError):
    """A URI in a bucket outside ``ALLOWED_BUCKETS``."""

    code = "bucket_not_allowed"


class ConflictError(ServiceError):
    """The request conflicts with what exists (an output object, a finished job, a key)."""

    code = "conflict"
    http_status = 409


class UnavailableError(ServiceError):
    """Something we depend on is not available now; retrying later can succeed."""

    code = "unavailable"
    http_status = 503
    retry_after_s = 5


class ModelsUnavailableError(UnavailableError):
    """The models are not loaded: still loading, or the preload failed (the message says why)."""

    code = "models_unavailable"
    retry_after_s = 10


class ServerBusyError(UnavailableError):
    """The device queue is full."""

    code = "server_busy"

    def __init__(self, message: str, retry_after_s: int = 10) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InterruptedJobError(UnavailableError):
    """The render was stopped before it finished (shutdown or cancel); nothing was written."""

    code = "interrupted"
