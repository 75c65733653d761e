"""Storage for inputs and outputs: ``gs://`` (Cloud Storage or its emulator) and ``file://``
(under ``LOCAL_STORAGE_ROOT``). Use :class:`Storage`; the exceptions are in
:mod:`service.storage.errors`."""
from __future__ import annotations

from service.storage.errors import (
    BadURIError,
    BucketNotFoundError,
    InputTooLargeError,
    ObjectChangedError,
    ObjectNotFoundError,
    OutputExistsError,
    StorageAccessDeniedError,
    StorageError,
    StorageUnavailableError,
)
from service.storage.info import ObjectInfo
from service.storage.storage import DEFAULT_MAX_DOWNLOAD_BYTES, VIDEO_MP4, Storage
from service.storage.uris import GcsUri, LocalUri, StorageUri, parse_uri

__all__ = [
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "VIDEO_MP4",
    "BadURIError",
    "BucketNotFoundError",
    "GcsUri",
    "InputTooLargeError",
    "LocalUri",
    "ObjectChangedError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "OutputExistsError",
    "Storage",
    "StorageAccessDeniedError",
    "StorageError",
    "StorageUnavailableError",
    "StorageUri",
    "parse_uri",
]
