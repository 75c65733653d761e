"""``lipsync weights fetch``: download checkpoints with resume, progress and SHA-256 checks.

A download goes to ``<name>.partial`` next to its destination. An interrupted transfer
keeps the partial file and the next attempt asks for the rest with an HTTP ``Range``
request; only a complete file whose hash matches (when one is known) is renamed into place,
so ``WEIGHTS_DIR`` never holds a half-written checkpoint under an official name.
"""
from __future__ import annotations

import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from tqdm import tqdm

from .catalog import WeightFile
from .check import sha256_of as _sha

log = logging.getLogger(__name__)

CHUNK = 1 << 20
ATTEMPTS = 4


class FetchError(Exception):
    """A file could not be downloaded and verified."""


def _transfer(url: str, part: Path, progress: IO[str] | None, name: str, timeout: float) -> None:
    """Append the rest of ``url`` to ``part``; raises on a short or failed transfer."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "lipsync-weights/1"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if have and resp.status != 206:  # server ignored the range: start again
            have = 0
            part.unlink()
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab") as out, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                             desc=name, file=progress, disable=progress is None,
                                             leave=True) as bar:
            got = 0
            while block := resp.read(CHUNK):
                out.write(block)
                got += len(block)
                bar.update(len(block))
        if length is not None and got < int(length):
            raise http.client.IncompleteRead(b"", int(length) - got)


def fetch_file(w: WeightFile, out_dir: Path, progress: IO[str] | None = None,
               urls: Iterable[str] | None = None, timeout: float = 60.0,
               attempts: int = ATTEMPTS) -> Path:
    """Download ``w`` into ``out_dir``; returns the final path.

    A file already present is kept when its hash (or, without a known hash, its size)
    matches, or when nothing is known to check it against; otherwise it is replaced.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / w.name
    if dest.is_file():
        if w.sha256 is None and w.size is None:
            log.info("%s already present (no known hash or size to verify it against)", dest)
            return dest
        if (_sha(dest) == w.sha256) if w.sha256 else dest.stat().st_size == w.size:
            log.info("%s already present and verified", dest)
            return dest
    part = dest.with_name(dest.name + ".partial")
    errors: list[str] = []
    if not any(_download(url, part, w.name, progress, timeout, attempts, errors)
               for url in list(urls or w.urls)):
        raise FetchError(f"could not download {w.name}: " + "; ".join(errors[-3:]) +
                         (f" (partial data kept in {part}; run the command again to resume)"
                          if part.exists() else ""))
    if w.size is not None and part.stat().st_size != w.size:
        size = part.stat().st_size
        part.unlink()
        raise FetchError(f"{w.name}: downloaded {size:,} bytes, expected {w.size:,}; removed it")
    if w.sha256:
        digest = _sha(part)
        if digest != w.sha256:
            part.unlink()
            raise FetchError(f"{w.name}: SHA-256 mismatch (got {digest}, expected {w.sha256}); "
                             "the download was removed — the mirror may serve a different file")
    part.replace(dest)
    return dest


def _download(url: str, part: Path, name: str, progress: IO[str] | None, timeout: float,
              attempts: int, errors: list[str]) -> bool:
    """Try ``url`` up to ``attempts`` times, resuming into ``part``; True once complete."""
    for attempt in range(attempts):
        try:
            _transfer(url, part, progress, name, timeout)
            return True
        except urllib.error.HTTPError as e:
            if e.code == 416 and part.exists():  # we already hold every byte
                return True
            errors.append(f"{url}: HTTP {e.code}")
            if e.code in (401, 403, 404, 410):
                return False  # this mirror will not serve it: try the next URL
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
            errors.append(f"{url}: {type(e).__name__}: {e}")
            log.warning("download of %s interrupted (%s); resuming", name, e)
        time.sleep(min(0.2 * 2 ** attempt, 5.0))
    return False
