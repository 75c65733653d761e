"""The storage layer's exceptions, placed in the service's one tree (:mod:`service.errors`).

============================  ======================  ======
exception                     ``code``                status
============================  ======================  ======
``BadURIError``               ``invalid_request``     422
``InputTooLargeError``        ``input_too_large``     413
``ObjectNotFoundError``       ``not_found``           404
``BucketNotFoundError``       ``not_found``           404
``OutputExistsError``         ``output_exists``       409
``ObjectChangedError``        ``storage_unavailable`` 503 (a retry reads the new object)
``StorageAccessDeniedError``  ``storage_denied``      502
``StorageUnavailableError``   ``storage_unavailable`` 503
``StorageError`` (other)      ``storage_denied``      502
============================  ======================  ======
"""
from __future__ import annotations

from service.errors import (
    BadInputError,
    ConflictError,
    InputTooLargeError,
    NotFoundError,
    ServiceError,
    UnavailableError,
)

__all__ = ["BadURIError", "BucketNotFoundError", "InputTooLargeError", "ObjectChangedError", "ObjectNotFoundError",
           "OutputExistsError", "StorageAccessDeniedError", "StorageError", "StorageUnavailableError"]


class BadURIError(BadInputError):
    """A storage URI is malformed, uses an unsupported scheme, or points outside
    ``LOCAL_STORAGE_ROOT``."""


class StorageError(ServiceError):
    """Base of the storage errors that are not the caller's malformed input: storage refused
    or failed the request (502)."""

    code = "storage_denied"
    http_status = 502


class ObjectNotFoundError(StorageError, NotFoundError):
    """The object (or its bucket, see :class:`BucketNotFoundError`) does not exist."""

    code = "not_found"
    http_status = 404


class BucketNotFoundError(ObjectNotFoundError):
    """The bucket named in the URI does not exist."""


class OutputExistsError(StorageError, ConflictError):
    """The output object already exists and overwriting is disabled."""

    code = "output_exists"
    http_status = 409


class StorageAccessDeniedError(StorageError):
    """Credentials are missing or lack permission for the object or bucket."""


class StorageUnavailableError(StorageError, UnavailableError):
    """The storage service could not be reached or kept failing after the retries."""

    code = "storage_unavailable"
    http_status = 503


class ObjectChangedError(StorageUnavailableError):
    """The object was replaced between reading its metadata and its content."""
