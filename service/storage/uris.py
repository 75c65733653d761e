"""Parsing and validating storage URIs: ``gs://bucket/object`` and ``file:///absolute/path``.

``gs://`` names follow the Cloud Storage naming rules, checked here so that a typo is a clear
422 before any network call. ``file://`` URIs are allowed only under a configured root: the path is
resolved (``..`` and symlinks followed) and must stay inside it.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from service.storage.errors import BadURIError

GS_SCHEME = "gs://"
FILE_SCHEME = "file://"

MAX_OBJECT_NAME_BYTES = 1024
MAX_BUCKET_COMPONENT = 63
MAX_BUCKET_WITH_DOTS = 222

_BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class GcsUri:
    """A Cloud Storage object: ``gs://{bucket}/{name}``."""

    bucket: str
    name: str

    def __str__(self) -> str:
        return f"{GS_SCHEME}{self.bucket}/{self.name}"

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class LocalUri:
    """A file under the local storage root. ``path`` is absolute, resolved and inside the root;
    ``uri`` is the URI as the caller wrote it (for messages)."""

    path: Path
    uri: str

    def __str__(self) -> str:
        return self.uri

    @property
    def basename(self) -> str:
        return self.path.name


StorageUri = GcsUri | LocalUri


def parse_uri(uri: str, *, local_root: Path | None) -> StorageUri:
    """Parse and validate ``uri``.

    ``local_root`` is the folder ``file://`` URIs must resolve into (``LOCAL_STORAGE_ROOT``);
    ``None`` refuses every ``file://`` URI. Raises :class:`BadURIError` with a message naming the
    problem.
    """
    if not isinstance(uri, str) or not uri:
        raise BadURIError("storage URI is empty: expected gs://bucket/object or file:///path")
    if uri.startswith(GS_SCHEME):
        return _parse_gs(uri)
    if uri.startswith(FILE_SCHEME):
        return _parse_file(uri, local_root)
    raise BadURIError(f"unsupported storage URI {uri!r}: expected gs://bucket/object or file:///absolute/path")


def _parse_gs(uri: str) -> GcsUri:
    rest = uri[len(GS_SCHEME):]
    bucket, sep, name = rest.partition("/")
    if not bucket:
        raise BadURIError(f"{uri!r} has no bucket name: expected gs://bucket/object")
    _check_bucket(bucket, uri)
    if not sep or not name:
        raise BadURIError(f"{uri!r} names a bucket, not an object: expected gs://{bucket}/path/to/object")
    _check_object_name(name, uri)
    return GcsUri(bucket, name)


def _check_bucket(bucket: str, uri: str) -> None:
    """Cloud Storage bucket naming rules (https://cloud.google.com/storage/docs/buckets#naming)."""
    problem = None
    if not _BUCKET_CHARS.fullmatch(bucket):
        problem = ("bucket names use only lower-case letters, digits, '-', '_' and '.', "
                   "and start and end with a letter or digit")
    elif "." in bucket:
        parts = bucket.split(".")
        if len(bucket) > MAX_BUCKET_WITH_DOTS or any(not p or len(p) > MAX_BUCKET_COMPONENT for p in parts):
            problem = (f"dotted bucket names are at most {MAX_BUCKET_WITH_DOTS} characters, "
                       f"each dot-separated part 1 to {MAX_BUCKET_COMPONENT}")
        elif _is_ipv4(bucket):
            problem = "bucket names cannot be IP addresses"
    elif not 3 <= len(bucket) <= MAX_BUCKET_COMPONENT:
        problem = f"bucket names are 3 to {MAX_BUCKET_COMPONENT} characters long"
    if problem is None and (bucket.startswith("goog") or "google" in bucket):
        problem = "bucket names cannot start with 'goog' or contain 'google'"
    if problem is not None:
        raise BadURIError(f"invalid bucket name {bucket!r} in {uri!r}: {problem}")


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _check_object_name(name: str, uri: str) -> None:
    """Cloud Storage object naming rules, plus: no folder names (ending in '/')."""
    problem = None
    if len(name.encode("utf-8", errors="surrogatepass")) > MAX_OBJECT_NAME_BYTES:
        problem = f"object names are at most {MAX_OBJECT_NAME_BYTES} bytes of UTF-8"
    elif _CONTROL_CHARS.search(name):
        problem = "object names cannot contain control characters (newlines, NUL, ...)"
    elif name in (".", ".."):
        problem = "object names cannot be '.' or '..'"
    elif name.startswith(".well-known/acme-challenge/"):
        problem = "object names cannot start with '.well-known/acme-challenge/'"
    elif name.endswith("/"):
        problem = "the name ends with '/', which names a folder, not an object"
    if problem is not None:
        raise BadURIError(f"invalid object name in {uri!r}: {problem}")


def _parse_file(uri: str, local_root: Path | None) -> LocalUri:
    if local_root is None:
        raise BadURIError(f"file:// URIs are disabled ({uri!r}): set LOCAL_STORAGE_ROOT to the folder "
                          "local inputs and outputs may use")
    rest = uri[len(FILE_SCHEME):]
    if rest.startswith("localhost/"):
        rest = rest[len("localhost"):]
    if not rest.startswith("/"):
        raise BadURIError(f"{uri!r} is not an absolute local path: expected file:///absolute/path "
                          "(three slashes)")
    try:
        raw = unquote(rest, errors="strict")
    except UnicodeDecodeError as e:
        raise BadURIError(f"{uri!r} has a percent-escape that is not UTF-8") from e
    if "\x00" in raw:
        raise BadURIError(f"{uri!r} contains a NUL character")
    root = local_root.resolve()
    # resolve() follows '..' and every symlink (dangling ones included), so the check below sees
    # where the path really points, not how it is spelled
    path = Path(raw).resolve()
    if path != root and not path.is_relative_to(root):
        raise BadURIError(f"{uri!r} resolves outside LOCAL_STORAGE_ROOT ({root}); only files under it "
                          "can be read or written")
    if path == root:
        raise BadURIError(f"{uri!r} is LOCAL_STORAGE_ROOT itself, not a file under it")
    return LocalUri(path, uri)
