"""``gs://`` storage through ``google-cloud-storage`` (real GCS or the fake-gcs-server emulator).

Retries: every client call gets a ``google.api_core.retry.Retry`` as ``retry=``, with the
service's backoff, :func:`is_transient` as the judge of what is worth retrying, and the attempts
of the whole operation (a stat, a download, an upload) counted by one
:class:`~service.storage.retry.AttemptBudget`, so ``retries`` bounds each operation as a whole.

Which calls get which retry, and why:

- Reads (``get_blob``, ``exists``, ``list_blobs``, ``download_*``, ``Bucket.exists``) are
  idempotent: their requests are repeated in place. An interrupted download resumes from the last
  byte received (a range request pinned to the same generation), and is checked against the
  object's CRC32C afterwards, as the library checks only downloads that arrive in one response.
- ``delete`` is repeated too: whatever the attempts did, the object ends up gone (a 404 on a retry
  can be our own earlier attempt, reported as "nothing to delete").
- Uploads (``upload_from_filename``, ``upload_from_string``): the multipart request, or each
  chunk of a resumable upload (resent to the same session), is repeated in place.
  google-cloud-storage repeats a non-idempotent write only when a precondition makes it
  idempotent (``DEFAULT_RETRY_IF_GENERATION_SPECIFIED``, its default for compose, rewrite, copy),
  while its default for uploads retries regardless; we retry both kinds on purpose. Without
  overwrite the upload carries ``ifGenerationMatch=0``, so a repeat cannot replace anything, and a
  412 after a retry is checked against our own file (an earlier attempt may have finished on the
  server while its reply was lost). With overwrite, and for the service's own records
  (``put_bytes``), replacing the object is the requested end state: repeating our write is safe.
- Failures a request cannot be repeated after (a lost resumable session, a corrupt transfer)
  start the whole transfer over, through a second ``Retry`` around it that spends the same budget.
"""
from __future__ import annotations

import base64
import functools
import http.client
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import google.auth
import google_crc32c
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from service.errors import ServiceError
from service.storage.errors import (
    BucketNotFoundError,
    ObjectChangedError,
    ObjectNotFoundError,
    OutputExistsError,
    StorageAccessDeniedError,
    StorageError,
    StorageUnavailableError,
)
from service.storage.files import COPY_CHUNK, LimitedWriter, removed_on_exit, too_large
from service.storage.info import ObjectInfo
from service.storage.retry import AttemptBudget, RetryPolicy, short_error
from service.storage.uris import GcsUri

log = logging.getLogger(__name__)

T = TypeVar("T")

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
RESUMABLE_CHUNK_ALIGN = 256 * 1024  # GCS requires resumable chunks in multiples of 256 KiB
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CHANGED_RETRIES = 2  # re-reads after the object was replaced between stat and download


def emulator_endpoint(explicit: str | None) -> str | None:
    """The emulator's base URL, or ``None`` for real Cloud Storage.

    ``explicit`` (the ``STORAGE_EMULATOR_HOST`` setting) wins; without it the environment variable
    of the same name is used, as google-cloud-storage itself does. ``host:port`` values get
    ``http://`` (the library needs a scheme, the emulator's docs often omit it)."""
    value = explicit or os.environ.get(EMULATOR_ENV) or None
    if value is None:
        return None
    value = value.strip().rstrip("/")
    if not value:
        return None
    return value if "://" in value else f"http://{value}"


class _UploadSessionLost(Exception):
    """A resumable upload session vanished (404/410 on its URL while the bucket exists): start over."""


_RESTART = (_UploadSessionLost, DataCorruption)


class GcsBackend:
    """Cloud Storage operations with error translation, retries and size limits.

    One ``storage.Client``, created on first use (so ``file://``-only use needs no credentials)
    and shared by all threads: the library documents its client as safe to share (its HTTP pool
    is urllib3's).
    """

    def __init__(
        self,
        *,
        endpoint: str | None,
        project: str | None,
        max_download_bytes: int | None,
        overwrite: bool,
        policy: RetryPolicy,
        timeout_s: float,
        upload_chunk_bytes: int,
        http: requests.Session | None = None,
    ) -> None:
        if upload_chunk_bytes <= 0 or upload_chunk_bytes % RESUMABLE_CHUNK_ALIGN:
            raise ValueError(f"upload_chunk_bytes must be a positive multiple of {RESUMABLE_CHUNK_ALIGN}, "
                             f"got {upload_chunk_bytes}")
        self.endpoint = endpoint
        self._project = project
        self._max_download_bytes = max_download_bytes
        self._overwrite = overwrite
        self._policy = policy
        self._timeout_s = timeout_s
        # api-core's deadline for the requests of one call: a backstop for requests that outlive
        # their timeout; the attempts bound the retrying long before it otherwise
        self._deadline_s = policy.deadline_s(timeout_s)
        self._chunk_bytes = upload_chunk_bytes
        self._http = http
        self._lock = threading.Lock()
        self._client_obj: storage.Client | None = None

    @property
    def where(self) -> str:
        return f"the storage emulator at {self.endpoint}" if self.endpoint else "Cloud Storage"

    def close(self) -> None:
        with self._lock:
            client, self._client_obj = self._client_obj, None
        if client is not None:
            client.close()

    # -- operations ----------------------------------------------------------------------------

    def stat(self, loc: GcsUri) -> ObjectInfo:
        blob = self._call(loc, "read metadata of", lambda budget: self._bucket(loc).get_blob(
            loc.name, timeout=self._timeout_s, retry=self._in_place(budget)))
        if blob is None:
            raise self._not_found(loc)
        return _info(loc, blob)

    def exists(self, loc: GcsUri) -> bool:
        return self._call(loc, "check", lambda budget: bool(self._bucket(loc).blob(loc.name).exists(
            timeout=self._timeout_s, retry=self._in_place(budget))))

    def delete(self, loc: GcsUri) -> bool:
        def op(budget: AttemptBudget) -> bool:
            try:
                self._bucket(loc).blob(loc.name).delete(timeout=self._timeout_s, retry=self._in_place(budget))
            except api_exceptions.NotFound:
                return False
            return True

        return self._call(loc, "delete", op)

    def download(self, loc: GcsUri, dest: Path, expected: ObjectInfo | None) -> Path:
        """Download exactly one generation of the object to ``dest``.

        The download names the generation (``generation=`` and ``ifGenerationMatch=``), so bytes of
        a newer version can never be mixed in, even when a retry resumes mid-file. If the object
        was replaced since its metadata was read: with ``expected`` (the caller keyed a cache by
        it) :class:`ObjectChangedError`; otherwise the new generation is downloaded instead.
        """
        info = expected if expected is not None else self.stat(loc)
        for _ in range(CHANGED_RETRIES + 1):
            self._check_size(loc, info.size)
            try:
                self._call(loc, "download", functools.partial(self._download_once, loc, info, dest), restart=True,
                           passthrough=(api_exceptions.NotFound, api_exceptions.PreconditionFailed))
                return dest
            except (api_exceptions.NotFound, api_exceptions.PreconditionFailed) as e:
                current = self.stat(loc)  # raises ObjectNotFoundError if it was deleted meanwhile
                if current.generation == info.generation:
                    raise StorageError(f"{loc} generation {info.generation} exists but could not be "
                                       f"downloaded: {e}") from e
                if expected is not None:
                    raise ObjectChangedError(f"{loc} was replaced (generation {info.generation} -> "
                                             f"{current.generation}) while it was being read; try again") from e
                log.info("%s was replaced during download (generation %s -> %s); downloading the new one",
                         loc, info.generation, current.generation)
                info = current
        raise ObjectChangedError(f"{loc} kept changing while it was being read; try again later")

    def put_bytes(self, loc: GcsUri, data: bytes, content_type: str) -> None:
        """Replace a small object with ``data`` in one request (visible only complete)."""
        self._call(loc, "write", lambda budget: self._bucket(loc).blob(loc.name).upload_from_string(
            data, content_type=content_type, timeout=self._timeout_s, retry=self._in_place(budget)))

    def get_bytes(self, loc: GcsUri) -> bytes:
        """A small object's content (no size limit: for the service's own records)."""
        return self._call(loc, "read", lambda budget: self._bucket(loc).blob(loc.name).download_as_bytes(
            timeout=self._timeout_s, retry=self._in_place(budget)), restart=True)

    def list_names(self, bucket: str, prefix: str) -> list[str]:
        """Object names under ``prefix`` (the whole listing, paged by the library)."""
        loc = GcsUri(bucket, prefix or "-")
        return self._call(loc, "list", lambda budget: [b.name for b in self._client().list_blobs(
            bucket, prefix=prefix, timeout=self._timeout_s, retry=self._in_place(budget))])

    def check_output(self, loc: GcsUri) -> None:
        """Refuse an output that cannot be written, before any work: a missing bucket, or an
        existing object without overwrite. A bucket we may not inspect (403: object-only
        permissions) passes; the upload itself will say."""
        if not self._bucket_exists(loc):
            raise BucketNotFoundError(f"cannot write {loc}: bucket {loc.bucket!r} does not exist")
        if not self._overwrite and self.exists(loc):
            raise _output_exists(loc)

    def upload(self, src: Path, loc: GcsUri, content_type: str) -> ObjectInfo:
        """Upload ``src`` as a complete object or not at all.

        Files up to 8 MiB go in one multipart request; larger ones through a resumable session in
        ``upload_chunk_bytes`` chunks, which GCS only turns into an object when the last chunk
        arrives. Without overwrite the upload carries ``ifGenerationMatch=0``: an existing object
        is refused by the server, never replaced. An existing object is also refused up front, as
        fake-gcs-server ignores preconditions on resumable uploads.
        """
        if not self._overwrite and self.exists(loc):
            raise _output_exists(loc)
        crc32c = _file_crc32c(src)
        size = src.stat().st_size

        def op(budget: AttemptBudget) -> ObjectInfo:
            try:
                return self._upload_once(src, loc, content_type, crc32c, budget)
            except api_exceptions.PreconditionFailed:
                if budget.retried:
                    # an earlier attempt may have finished on the server while its reply was lost
                    mine = self._existing_if_same(loc, size, crc32c)
                    if mine is not None:
                        return mine
                raise

        info = self._call(loc, "upload to", op, restart=True)
        log.info("uploaded %s (%d bytes, generation %s)", loc, info.size, info.generation)
        return info

    # -- helpers -------------------------------------------------------------------------------

    def _download_once(self, loc: GcsUri, info: ObjectInfo, dest: Path, budget: AttemptBudget) -> None:
        limit = self._max_download_bytes
        generation = int(info.generation)
        retried_before = budget.retried
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        with removed_on_exit(Path(tmp_name)) as tmp:
            with os.fdopen(fd, "wb") as raw:
                writer = LimitedWriter(raw, limit, str(loc))
                blob = self._bucket(loc).blob(loc.name, generation=generation)
                blob.download_to_file(writer, if_generation_match=generation, timeout=self._timeout_s,
                                      retry=self._in_place(budget, streamed=True), checksum="auto")
            if budget.retried > retried_before:
                # the library checks the CRC32C only of a download that came in one response
                self._check_resumed(loc, info, tmp)
            os.replace(tmp, dest)
        log.info("downloaded %s (%d bytes, generation %s)", loc, writer.written, generation)

    def _upload_once(self, src: Path, loc: GcsUri, content_type: str, crc32c: str,
                     budget: AttemptBudget) -> ObjectInfo:
        blob = self._bucket(loc).blob(loc.name, chunk_size=self._chunk_bytes)
        try:
            blob.upload_from_filename(
                str(src),
                content_type=content_type,
                if_generation_match=None if self._overwrite else 0,
                timeout=self._timeout_s,
                # repeated with or without a precondition: see "Uploads" in the module docstring
                retry=self._in_place(budget),
                checksum="auto",
                crc32c_checksum_value=crc32c,
            )
        except api_exceptions.NotFound as e:
            if not self._bucket_exists(loc):
                raise BucketNotFoundError(f"cannot write {loc}: bucket {loc.bucket!r} does not exist") from e
            raise _UploadSessionLost(f"upload session for {loc} was lost") from e
        except api_exceptions.GoogleAPICallError as e:
            if e.code == 410:  # api-core has no class for 410: it is a bare GoogleAPICallError
                raise _UploadSessionLost(f"upload session for {loc} expired") from e
            raise
        return _info(loc, blob)

    def _existing_if_same(self, loc: GcsUri, size: int, crc32c: str) -> ObjectInfo | None:
        try:
            current = self.stat(loc)
        except ObjectNotFoundError:
            return None
        if current.size == size and current.crc32c == crc32c:
            log.info("%s already holds this upload (an earlier attempt finished on the server)", loc)
            return current
        return None

    @staticmethod
    def _check_resumed(loc: GcsUri, info: ObjectInfo, path: Path) -> None:
        if info.crc32c and _file_crc32c(path) != info.crc32c:
            raise DataCorruption(None, f"the resumed download of {loc} does not match its CRC32C")

    def _check_size(self, loc: GcsUri, size: int) -> None:
        limit = self._max_download_bytes
        if limit is not None and size > limit:
            raise too_large(str(loc), size, limit)

    def _bucket_exists(self, loc: GcsUri) -> bool:
        """Best effort: ``True`` when the bucket exists or we may not ask (403)."""
        budget = AttemptBudget(self._policy, f"check bucket {loc.bucket}")
        try:
            return bool(self._client().bucket(loc.bucket).exists(timeout=self._timeout_s,
                                                                 retry=self._in_place(budget)))
        except Exception as e:  # any failure here only loses a more precise message
            log.debug("could not check whether bucket %s exists: %s", loc.bucket, e)
            return True

    def _not_found(self, loc: GcsUri) -> ObjectNotFoundError:
        if not self._bucket_exists(loc):
            return BucketNotFoundError(f"{loc} not found: bucket {loc.bucket!r} does not exist")
        return ObjectNotFoundError(f"{loc} not found: no such object in bucket {loc.bucket!r}")

    def _call(self, loc: GcsUri, what: str, op: Callable[[AttemptBudget], T], *, restart: bool = False,
              passthrough: tuple[type[BaseException], ...] = ()) -> T:
        """One operation: ``op`` gets the operation's attempt budget, for the ``retry=`` of its
        client calls (:meth:`_in_place`). ``restart``: ``op`` is a whole transfer, run again from
        the start after a failure its requests cannot be repeated after. Errors are translated to
        the storage exception tree, except the ``passthrough`` types, which the caller handles."""
        budget = AttemptBudget(self._policy, f"{what} {loc}")
        try:
            if restart:
                return budget.retry(_needs_restart, timeout_s=None)(op)(budget)
            return op(budget)
        except ServiceError:
            raise
        except passthrough:
            raise
        except Exception as e:
            translated = self._translate(e, loc, what, budget.attempts)
            if translated is None:
                raise
            raise translated from e

    def _in_place(self, budget: AttemptBudget, *, streamed: bool = False) -> Retry:
        """The ``retry=`` for one client call: failed requests are repeated as they are (the
        library itself resumes a download, or resends a resumable chunk, where it stopped).
        ``streamed``: the call is a whole download, which may rightly take longer than any
        deadline, so only the attempts bound it."""
        return budget.retry(_retried_in_place, timeout_s=None if streamed else self._deadline_s)

    def _translate(self, e: BaseException, loc: GcsUri, what: str, attempts: int) -> StorageError | None:
        if isinstance(e, api_exceptions.RetryError) and e.cause is not None:
            e = e.cause  # api-core's deadline passed before the attempts ran out
        if isinstance(e, api_exceptions.NotFound):
            return ObjectNotFoundError(f"{loc} not found")
        if isinstance(e, api_exceptions.PreconditionFailed):
            return _output_exists(loc)
        if isinstance(e, api_exceptions.Unauthorized | api_exceptions.Forbidden):
            return StorageAccessDeniedError(f"access denied to {what} {loc}: {short_error(e)}")
        if isinstance(e, auth_exceptions.RefreshError):
            return StorageAccessDeniedError(f"could not authenticate to {self.where} to {what} {loc}: {e}")
        if is_transient(e):
            return StorageUnavailableError(f"{self.where} is unavailable: could not {what} {loc} after "
                                           f"{attempts} attempts ({type(e).__name__}: {short_error(e)})")
        if isinstance(e, api_exceptions.GoogleAPICallError):
            return StorageError(f"could not {what} {loc}: {short_error(e)}")
        return None

    def _bucket(self, loc: GcsUri) -> storage.Bucket:
        return self._client().bucket(loc.bucket)

    def _client(self) -> storage.Client:
        with self._lock:
            if self._client_obj is None:
                self._client_obj = storage.Client(
                    project=self._project,
                    credentials=self._credentials(),
                    client_options={"api_endpoint": self.endpoint} if self.endpoint else None,
                    _http=self._http,
                )
            return self._client_obj

    def _credentials(self) -> Credentials:
        if self.endpoint:
            return AnonymousCredentials()
        try:
            credentials, _ = google.auth.default(scopes=storage.Client.SCOPE)
        except auth_exceptions.DefaultCredentialsError as e:
            raise StorageAccessDeniedError(
                "no Google Cloud credentials found: set GOOGLE_APPLICATION_CREDENTIALS to a service-account "
                f"key file or run `gcloud auth application-default login` (or set {EMULATOR_ENV} to use the "
                "emulator)") from e
        return credentials


def is_transient(e: BaseException) -> bool:
    """Errors worth retrying: throttling, 5xx, timeouts, dropped connections, corrupt transfers."""
    if isinstance(e, _RESTART):
        return True
    if isinstance(e, api_exceptions.GoogleAPICallError):
        return e.code in TRANSIENT_STATUS
    if isinstance(e, InvalidResponse):
        return getattr(e.response, "status_code", None) in TRANSIENT_STATUS
    if isinstance(e, auth_exceptions.TransportError):
        return True
    return isinstance(e, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
                      | ConnectionError | TimeoutError | http.client.HTTPException)


def _retried_in_place(e: Exception) -> bool:
    """Transient errors after which the failed request itself can be sent again."""
    return is_transient(e) and not isinstance(e, _RESTART)


def _needs_restart(e: Exception) -> bool:
    """Transient errors after which the transfer starts over: the upload session is gone, or the
    bytes that arrived are wrong (a resumed request would build on them)."""
    return isinstance(e, _RESTART)


def _info(loc: GcsUri, blob: storage.Blob) -> ObjectInfo:
    return ObjectInfo(uri=str(loc), size=int(blob.size or 0), generation=str(blob.generation),
                      content_type=blob.content_type, md5=blob.md5_hash, crc32c=blob.crc32c)


def _output_exists(loc: GcsUri) -> OutputExistsError:
    return OutputExistsError(f"{loc} already exists and overwriting outputs is disabled "
                             "(setting OVERWRITE_OUTPUT)")


def _file_crc32c(path: Path) -> str:
    """Base64 of the big-endian CRC32C, the form GCS reports in ``crc32c``."""
    checksum = google_crc32c.Checksum()
    with path.open("rb") as f:
        while chunk := f.read(COPY_CHUNK):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode("ascii")
