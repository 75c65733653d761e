"""The :class:`Storage` facade: one object the pipelines use for every ``gs://`` and ``file://``
read and write."""
from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

import requests

from service.errors import BucketNotAllowedError
from service.storage.errors import BadURIError
from service.storage.files import safe_filename, too_large
from service.storage.gcs import GcsBackend, emulator_endpoint
from service.storage.info import ObjectInfo
from service.storage.local import LocalBackend
from service.storage.retry import RetryPolicy
from service.storage.uris import GcsUri, LocalUri, StorageUri, parse_uri

log = logging.getLogger(__name__)

DEFAULT_MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024  # a few minutes of 1080p video
DEFAULT_UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024
VIDEO_MP4 = "video/mp4"


class Storage:
    """Reads inputs and writes outputs named by ``gs://bucket/object`` or ``file:///path`` URIs.

    Args:
        emulator_host: ``STORAGE_EMULATOR_HOST`` (``host:port`` or a URL). ``None``: the
            environment variable of that name if set (google-cloud-storage's own convention), else
            real Cloud Storage with Application Default Credentials. The emulator gets anonymous
            credentials.
        project: Google Cloud project for the client (object operations do not need one).
        local_root: ``LOCAL_STORAGE_ROOT``; ``file://`` URIs must resolve inside it. ``None``
            refuses ``file://``.
        max_download_bytes: inputs larger than this are refused before and while downloading
            (``None``: no limit).
        overwrite: replace an existing output (``True``) or refuse it with
            :class:`~service.storage.errors.OutputExistsError` (``False``).
        allowed_buckets: ``ALLOWED_BUCKETS``: ``gs://`` URIs naming any other bucket are refused
            with :class:`~service.errors.BucketNotAllowedError` before any storage call
            (``None``: any bucket).
        retries, backoff_initial_s, backoff_max_s: transient failures (5xx, 429, timeouts, refused
            connections) are retried this many extra times with exponential backoff (seconds).
        timeout_s: per HTTP request (connect and read), seconds.
        upload_chunk_bytes: chunk size of resumable uploads (files over 8 MiB); a multiple of 256 KiB.
        http: a ``requests.Session`` to send GCS requests through instead of an authorised one
            (tests use it to inject faults; it must carry its own authentication).

    Thread-safe; create one per process and share it.
    """

    def __init__(
        self,
        *,
        emulator_host: str | None = None,
        project: str | None = None,
        local_root: Path | None = None,
        max_download_bytes: int | None = DEFAULT_MAX_DOWNLOAD_BYTES,
        overwrite: bool = False,
        allowed_buckets: frozenset[str] | None = None,
        retries: int = 3,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
        timeout_s: float = 60.0,
        upload_chunk_bytes: int = DEFAULT_UPLOAD_CHUNK_BYTES,
        http: requests.Session | None = None,
    ) -> None:
        if local_root is not None:
            local_root = Path(local_root).expanduser().resolve()
            if not local_root.is_dir():
                raise ValueError(f"LOCAL_STORAGE_ROOT {local_root} is not an existing directory")
        if max_download_bytes is not None and max_download_bytes <= 0:
            raise ValueError(f"max_download_bytes must be positive, got {max_download_bytes}")
        self.local_root = local_root
        self.overwrite = overwrite
        self.allowed_buckets = allowed_buckets
        self.max_download_bytes = max_download_bytes
        self._gcs = GcsBackend(
            endpoint=emulator_endpoint(emulator_host),
            project=project,
            max_download_bytes=max_download_bytes,
            overwrite=overwrite,
            policy=RetryPolicy(retries=retries, initial_s=backoff_initial_s, max_s=backoff_max_s),
            timeout_s=timeout_s,
            upload_chunk_bytes=upload_chunk_bytes,
            http=http,
        )
        self._local = LocalBackend(max_download_bytes=max_download_bytes, overwrite=overwrite)

    @property
    def gcs(self) -> GcsBackend:
        """The Cloud Storage backend itself, for the service's own objects (job records):
        no URI allowlist, no download limit."""
        return self._gcs

    @property
    def emulator_endpoint(self) -> str | None:
        """The emulator URL in use, or ``None`` for real Cloud Storage."""
        return self._gcs.endpoint

    def parse(self, uri: str) -> StorageUri:
        """Validate ``uri`` without touching storage (raises :class:`BadURIError`, or
        :class:`BucketNotAllowedError` for a bucket outside ``allowed_buckets``)."""
        loc = parse_uri(uri, local_root=self.local_root)
        if self.allowed_buckets is not None and isinstance(loc, GcsUri) and loc.bucket not in self.allowed_buckets:
            raise BucketNotAllowedError(f"{uri}: bucket {loc.bucket!r} is not one this service may use "
                                        "(ALLOWED_BUCKETS); ask its operator which buckets are allowed")
        return loc

    def check_input(self, uri: str) -> ObjectInfo:
        """The input object's metadata, refused before any download when it is missing or over
        the download limit."""
        info = self.stat(uri)
        if self.max_download_bytes is not None and info.size > self.max_download_bytes:
            raise too_large(uri, info.size, self.max_download_bytes)
        return info

    def check_output(self, uri: str) -> None:
        """Everything about an output URI that can be known before the work: its form, its
        bucket (allowed, existing), and, without overwrite, that no object is there yet."""
        loc = self.parse(uri)
        if isinstance(loc, GcsUri):
            self._gcs.check_output(loc)
        else:
            self._local.check_output(loc)

    def stat(self, uri: str) -> ObjectInfo:
        """Metadata of the object, without downloading it; ``generation`` identifies the content."""
        loc = self.parse(uri)
        return self._gcs.stat(loc) if isinstance(loc, GcsUri) else self._local.stat(loc)

    def exists(self, uri: str) -> bool:
        loc = self.parse(uri)
        return self._gcs.exists(loc) if isinstance(loc, GcsUri) else self._local.exists(loc)

    def delete(self, uri: str) -> bool:
        """Delete the object; ``False`` if there was nothing to delete."""
        loc = self.parse(uri)
        return self._gcs.delete(loc) if isinstance(loc, GcsUri) else self._local.delete(loc)

    def download(self, uri: str, dest_dir: Path, *, info: ObjectInfo | None = None,
                 filename: str | None = None) -> Path:
        """Download the object into ``dest_dir`` (caller-owned, e.g. a per-request temp folder)
        and return the file's path.

        ``info``: the :meth:`stat` result the caller already has (and maybe keyed a cache by);
        the download then fetches exactly that generation or raises
        :class:`~service.storage.errors.ObjectChangedError`. ``filename`` defaults to a sanitised
        form of the object's basename; a file of that name already in ``dest_dir`` is replaced.
        On failure nothing is left in ``dest_dir``.
        """
        loc = self.parse(uri)
        dest_dir = Path(dest_dir)
        if not dest_dir.is_dir():
            raise NotADirectoryError(f"download destination {dest_dir} is not an existing directory")
        if info is not None and info.uri != str(loc):
            raise ValueError(f"info is for {info.uri}, not {loc}")
        dest = dest_dir / (safe_filename(filename) if filename else safe_filename(loc.basename))
        if isinstance(loc, GcsUri):
            return self._gcs.download(loc, dest, info)
        return self._local.download(loc, dest, info)

    def upload(self, path: Path, uri: str, content_type: str = VIDEO_MP4) -> ObjectInfo:
        """Store the file at ``path`` as ``uri``: all or nothing, never a partial object; an
        existing object is replaced or refused according to ``overwrite``. ``content_type`` is
        stored with ``gs://`` objects (files have none). Returns the new object's metadata."""
        loc = self.parse(uri)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"upload source {path} is not an existing file")
        if isinstance(loc, LocalUri):
            if loc.path == path.resolve():
                raise BadURIError(f"{uri} is the upload's own source file")
            return self._local.upload(path, loc)
        return self._gcs.upload(path, loc, content_type)

    def close(self) -> None:
        """Close the HTTP sessions."""
        self._gcs.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
