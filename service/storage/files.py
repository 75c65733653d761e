"""Small file helpers shared by the backends: safe local names, size-limited writes, hashing."""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from service.storage.errors import InputTooLargeError

COPY_CHUNK = 1 << 20  # 1 MiB reads: large enough to be fast, small enough to check the limit often
MAX_FILENAME = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str, fallback: str = "input") -> str:
    """A local file name derived from an object's basename: only ``[A-Za-z0-9._-]``, no leading
    dot, at most ``MAX_FILENAME`` characters, the suffix (``.mp4``) kept when it fits."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".")
    if not cleaned or cleaned in (".", ".."):
        return fallback
    if len(cleaned) > MAX_FILENAME:
        stem, dot, suffix = cleaned.rpartition(".")
        suffix = dot + suffix if dot and len(suffix) <= 10 else ""
        cleaned = cleaned[: MAX_FILENAME - len(suffix)] + suffix
    return cleaned


def too_large(uri: str, size: int, limit: int) -> InputTooLargeError:
    return InputTooLargeError(f"{uri} is {size / 1e6:.1f} MB, over the download limit of {limit / 1e6:.1f} MB "
                              "(setting MAX_DOWNLOAD_BYTES)")


class LimitedWriter:
    """A write-only binary stream that raises :class:`InputTooLargeError` as soon as more than
    ``limit`` bytes (``None``: no limit) were written, so an object that grew after its size was checked cannot fill
    the disk. Only ``write`` is needed by the GCS download code."""

    def __init__(self, raw: BinaryIO, limit: int | None, uri: str) -> None:
        self._raw = raw
        self._limit = limit
        self._uri = uri
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self._limit is not None and self.written > self._limit:
            raise too_large(self._uri, self.written, self._limit)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def copy_limited(src: BinaryIO, dst: BinaryIO, limit: int | None, uri: str) -> str:
    """Copy ``src`` to ``dst``; raise :class:`InputTooLargeError` past ``limit`` bytes. Returns the
    hex SHA-256 of what was copied."""
    h = hashlib.sha256()
    total = 0
    while chunk := src.read(COPY_CHUNK):
        total += len(chunk)
        if limit is not None and total > limit:
            raise too_large(uri, total, limit)
        h.update(chunk)
        dst.write(chunk)
    return h.hexdigest()


@contextmanager
def removed_on_exit(path: Path) -> Iterator[Path]:
    """Yield ``path``; whatever happens, no file is left at it afterwards (a temp file that was
    renamed away is already gone, which is fine)."""
    try:
        yield path
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
