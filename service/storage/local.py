"""``file://`` storage: files under ``LOCAL_STORAGE_ROOT`` (paths already validated by
:func:`service.storage.uris.parse_uri`)."""
from __future__ import annotations

import errno
import logging
import mimetypes
import os
import stat as stat_mod
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from service.storage.errors import (
    BadURIError,
    ObjectChangedError,
    ObjectNotFoundError,
    OutputExistsError,
    StorageAccessDeniedError,
    StorageError,
)
from service.storage.files import copy_limited, removed_on_exit, sha256_file, too_large
from service.storage.info import ObjectInfo
from service.storage.uris import LocalUri

log = logging.getLogger(__name__)

HASH_PREFIX = "sha256:"
HASH_CACHE_ENTRIES = 4096
OUTPUT_MODE = 0o644  # mkstemp creates 0600; outputs should be readable like any other written file

_StatKey = tuple[str, int, int, int, int]


class LocalBackend:
    """Reads and writes files; a file's "generation" is the SHA-256 of its bytes, cached by
    (path, device, inode, mtime_ns, size) so repeated ``stat`` calls do not re-read the file."""

    def __init__(self, *, max_download_bytes: int | None, overwrite: bool) -> None:
        self._max_download_bytes = max_download_bytes
        self._overwrite = overwrite
        self._hashes: OrderedDict[_StatKey, str] = OrderedDict()
        self._lock = threading.Lock()

    def stat(self, loc: LocalUri) -> ObjectInfo:
        st = self._stat_file(loc)
        digest = self._cached_hash(loc.path, st)
        if digest is None:
            try:
                digest = sha256_file(loc.path)
            except OSError as e:
                raise _translate(e, loc, "read") from e
            self._remember_hash(loc.path, st, digest)
        return _info(loc, st, digest)

    def exists(self, loc: LocalUri) -> bool:
        return loc.path.is_file()

    def delete(self, loc: LocalUri) -> bool:
        try:
            loc.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise _translate(e, loc, "delete") from e
        return True

    def download(self, loc: LocalUri, dest: Path, expected: ObjectInfo | None) -> Path:
        """Copy the file to ``dest`` (through a temp file in the same folder, renamed at the end).
        With ``expected``, the copied bytes must hash to ``expected.generation``."""
        limit = self._max_download_bytes
        try:
            # O_NOFOLLOW: the path was resolved when parsed; a symlink here now means it was swapped
            fd = os.open(loc.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as e:
            raise _translate(e, loc, "read") from e
        with os.fdopen(fd, "rb") as src:
            st = os.fstat(src.fileno())
            if not stat_mod.S_ISREG(st.st_mode):
                raise BadURIError(f"{loc.uri} is not a regular file")
            if limit is not None and st.st_size > limit:
                raise too_large(loc.uri, st.st_size, limit)
            tmp_fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            with removed_on_exit(Path(tmp_name)) as tmp:
                with os.fdopen(tmp_fd, "wb") as out:
                    digest = copy_limited(src, out, limit, loc.uri)
                if expected is not None and expected.generation != HASH_PREFIX + digest:
                    raise ObjectChangedError(f"{loc.uri} changed while it was being read; try again")
                os.replace(tmp, dest)
        return dest

    def check_output(self, loc: LocalUri) -> None:
        """Refuse an existing output without overwrite, before any work."""
        if not self._overwrite and loc.path.exists():
            raise OutputExistsError(f"{loc.uri} already exists and overwriting outputs is disabled "
                                    "(setting OVERWRITE_OUTPUT)")

    def upload(self, src: Path, loc: LocalUri) -> ObjectInfo:
        """Write ``src`` to the URI's path atomically: a temp file in the destination folder,
        fsynced, then renamed over the target (``overwrite``) or hard-linked to it, which fails if
        the target exists (no overwrite). Readers see the old file or the whole new one."""
        dest = loc.path
        if not self._overwrite and dest.exists():
            raise OutputExistsError(f"{loc.uri} already exists and overwriting outputs is disabled "
                                    "(setting OVERWRITE_OUTPUT)")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp_fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        except OSError as e:
            raise _translate(e, loc, "write") from e
        with removed_on_exit(Path(tmp_name)) as tmp:
            try:
                with os.fdopen(tmp_fd, "wb") as out, src.open("rb") as inp:
                    digest = copy_limited(inp, out, None, str(src))
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, OUTPUT_MODE)
                if self._overwrite:
                    os.replace(tmp, dest)
                else:
                    _link_no_clobber(tmp, dest, loc)
                _fsync_dir(dest.parent)
                st = os.stat(dest)
            except StorageError:
                raise
            except OSError as e:
                raise _translate(e, loc, "write") from e
        self._remember_hash(dest, st, digest)
        log.info("wrote %s (%d bytes)", loc.uri, st.st_size)
        return _info(loc, st, digest)

    def _stat_file(self, loc: LocalUri) -> os.stat_result:
        try:
            st = os.stat(loc.path)
        except OSError as e:
            raise _translate(e, loc, "read") from e
        if not stat_mod.S_ISREG(st.st_mode):
            raise BadURIError(f"{loc.uri} is not a regular file")
        return st

    def _cached_hash(self, path: Path, st: os.stat_result) -> str | None:
        key = _stat_key(path, st)
        with self._lock:
            digest = self._hashes.get(key)
            if digest is not None:
                self._hashes.move_to_end(key)
            return digest

    def _remember_hash(self, path: Path, st: os.stat_result, digest: str) -> None:
        with self._lock:
            self._hashes[_stat_key(path, st)] = digest
            while len(self._hashes) > HASH_CACHE_ENTRIES:
                self._hashes.popitem(last=False)


def _stat_key(path: Path, st: os.stat_result) -> _StatKey:
    return (str(path), st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _info(loc: LocalUri, st: os.stat_result, digest: str) -> ObjectInfo:
    content_type, _ = mimetypes.guess_type(loc.path.name)
    return ObjectInfo(uri=loc.uri, size=st.st_size, generation=HASH_PREFIX + digest, content_type=content_type)


def _link_no_clobber(tmp: Path, dest: Path, loc: LocalUri) -> None:
    """Publish ``tmp`` at ``dest`` only if nothing is there (atomic: ``link`` never replaces)."""
    try:
        os.link(tmp, dest)
    except FileExistsError as e:
        raise OutputExistsError(f"{loc.uri} already exists and overwriting outputs is disabled "
                                "(setting OVERWRITE_OUTPUT)") from e
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # a filesystem without hard links: check-then-rename leaves a small race, no partial file
        if dest.exists():
            raise OutputExistsError(f"{loc.uri} already exists and overwriting outputs is disabled "
                                    "(setting OVERWRITE_OUTPUT)") from e
        os.replace(tmp, dest)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; best effort (not every filesystem allows opening a directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _translate(e: OSError, loc: LocalUri, action: str) -> StorageError | BadURIError:
    if isinstance(e, FileNotFoundError):
        return ObjectNotFoundError(f"{loc.uri} does not exist")
    if isinstance(e, PermissionError):
        return StorageAccessDeniedError(f"permission denied to {action} {loc.uri}")
    if isinstance(e, IsADirectoryError | NotADirectoryError):
        return BadURIError(f"{loc.uri} is not a regular file")
    if e.errno == errno.ELOOP:
        return BadURIError(f"{loc.uri} became a symbolic link after it was checked; refusing to follow it")
    return StorageError(f"could not {action} {loc.uri}: {e.strerror or e}")
