"""The storage layer's exceptions: one tree under :class:`service.errors.ServiceError`.

Intended HTTP statuses (the API maps them in one place; nothing here knows about HTTP):

============================  ======================  ======
exception                     ``code``                status
============================  ======================  ======
``BadURIError``               ``bad_uri``             422
``InputTooLargeError``        ``input_too_large``     422 (413 would also fit)
``ObjectNotFoundError``       ``object_not_found``    404
``BucketNotFoundError``       ``bucket_not_found``    404
``OutputExistsError``         ``output_exists``       409
``ObjectChangedError``        ``object_changed``      409
``StorageAccessDeniedError``  ``storage_access_denied`` 502
``StorageUnavailableError``   ``storage_unavailable`` 503
``StorageError`` (other)      ``storage_error``       502
============================  ======================  ======
"""
from __future__ import annotations

from service.errors import BadInputError, ServiceError


class BadURIError(BadInputError):
    """A storage URI is malformed, uses an unsupported scheme, or points outside
    ``LOCAL_STORAGE_ROOT``."""

    code = "bad_uri"


class InputTooLargeError(BadInputError):
    """The input object is larger than the configured download limit."""

    code = "input_too_large"


class StorageError(ServiceError):
    """Base of the storage errors that are not the caller's malformed input."""

    code = "storage_error"


class ObjectNotFoundError(StorageError):
    """The object (or its bucket, see :class:`BucketNotFoundError`) does not exist."""

    code = "object_not_found"


class BucketNotFoundError(ObjectNotFoundError):
    """The bucket named in the URI does not exist."""

    code = "bucket_not_found"


class OutputExistsError(StorageError):
    """The output object already exists and overwriting is disabled."""

    code = "output_exists"


class ObjectChangedError(StorageError):
    """The object was replaced between reading its metadata and its content."""

    code = "object_changed"


class StorageAccessDeniedError(StorageError):
    """Credentials are missing or lack permission for the object or bucket."""

    code = "storage_access_denied"


class StorageUnavailableError(StorageError):
    """The storage service could not be reached or kept failing after the retries."""

    code = "storage_unavailable"
