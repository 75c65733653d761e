"""Object metadata returned by :meth:`service.storage.Storage.stat` and ``upload``."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectInfo:
    """Cheap metadata of a stored object (no content downloaded).

    ``generation`` identifies this exact content and is what per-input caches are keyed by: the
    GCS object generation (a decimal string) for ``gs://``, ``"sha256:<hex>"`` of the file's bytes
    for ``file://``. ``md5`` and ``crc32c`` are base64 as GCS reports them (``None`` for files).
    ``size`` is in bytes.
    """

    uri: str
    size: int
    generation: str
    content_type: str | None = None
    md5: str | None = None
    crc32c: str | None = None
