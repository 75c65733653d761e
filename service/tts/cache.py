"""The persistent TTS audio cache: one ``.npy`` per entry plus ``metadata.json``, LRU + TTL.

Layout of ``directory``::

    metadata.json     {"version", "hits", "misses", "entries": {key: {created, last_access, ...}}}
    audio/<key>.npy   float32 [N] samples (lossless: exactly what the engine returned)
    .lock             fcntl.flock target

Concurrency: every operation reads, changes and rewrites ``metadata.json`` while holding an
exclusive ``flock`` on ``.lock`` (per-acquisition file descriptors, so threads, processes and
several instances on one folder all exclude each other). Files are written to a temporary name
and ``os.replace``-d, so readers never see a torn file; an entry whose file is missing, unreadable
or fails its CRC is dropped and counts as a miss, and the caller synthesizes again. Threads of
one instance asking for the same missing key wait for one synthesis instead of repeating it;
two processes may both synthesize, and the one that stores second gets the first one's audio
back, so every caller sees the same samples for a key. No fsync: after a power loss an entry
can be lost, never wrong (its CRC no longer matches). Needs a local file system (flock over
NFS is not reliable).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from service.types import Audio

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 1000
DEFAULT_TTL_S = 7 * 24 * 3600.0  # the customer's guide: entries live a week
_FORMAT_VERSION = 1


def cache_key(fields: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``fields`` (sorted keys, no spaces, UTF-8).

    ``fields`` must hold everything that changes the audio: text, language, engine and its
    parameters. Values must be JSON types; floats are written by ``repr``, so 1.0 and 1 differ.
    """
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class TTSCache:
    """LRU (``max_entries``) + TTL (``ttl_s`` from creation; None = never expire) audio cache.

    ``clock`` (seconds, ``time.time`` by default) is injectable for TTL tests. A new instance
    on the same folder sees everything earlier ones stored, counters included.
    """

    def __init__(self, directory: str | os.PathLike[str], max_entries: int = DEFAULT_MAX_ENTRIES,
                 ttl_s: float | None = DEFAULT_TTL_S, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive (or None for no expiry), got {ttl_s}")
        self.directory = Path(directory).expanduser().resolve()
        self.max_entries, self.ttl_s, self.clock = max_entries, ttl_s, clock
        self._audio_dir = self.directory / "audio"
        self._audio_dir.mkdir(parents=True, exist_ok=True)
        self._meta_path = self.directory / "metadata.json"
        self._lock_path = self.directory / ".lock"
        self._thread_lock = threading.Lock()
        self._inflight_guard = threading.Lock()
        self._inflight: dict[str, list[Any]] = {}  # key -> [lock, number of waiting threads]

    # ---- public API -------------------------------------------------------------------------

    def get(self, key: str) -> Audio | None:
        """The cached audio for ``key`` (a hit, refreshing its LRU position) or None (a miss)."""
        with self._locked() as meta:
            entry = meta["entries"].get(key)
            audio = None
            if entry is not None and self._expired(entry):
                self._drop(meta, key, "expired")
            elif entry is not None:
                audio = self._load(key, entry)
                if audio is None:
                    self._drop(meta, key, "unreadable or corrupt")
            if audio is None:
                meta["misses"] += 1
                return None
            entry["last_access"] = self.clock()
            meta["hits"] += 1
            return audio

    def put(self, key: str, audio: Audio, fields: Mapping[str, Any] | None = None) -> Audio:
        """Store ``audio`` under ``key`` and return what the cache now holds for it.

        When a valid entry already exists (another process stored it meanwhile), that audio is
        kept and returned, so all callers agree. Evicts expired entries, then the least recently
        used ones, down to ``max_entries``.
        """
        samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
        with self._locked() as meta:
            entry = meta["entries"].get(key)
            if entry is not None and not self._expired(entry):
                existing = self._load(key, entry)
                if existing is not None:
                    entry["last_access"] = self.clock()
                    return existing
            path = self._file(key)
            tmp = path.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                with open(tmp, "wb") as f:
                    np.save(f, samples, allow_pickle=False)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            now = self.clock()
            meta["entries"][key] = {
                "created": now, "last_access": now, "size_bytes": path.stat().st_size,
                "samples": int(samples.shape[0]), "sample_rate": audio.sample_rate,
                "crc32": zlib.crc32(samples.tobytes()), "params": dict(fields or {}),
            }
            self._evict(meta)
            return Audio(samples, audio.sample_rate)

    def get_or_create(self, fields: Mapping[str, Any], create: Callable[[], Audio]) -> tuple[Audio, bool]:
        """(audio, hit) for ``fields``; on a miss ``create()`` makes it and it is stored.

        An exception from ``create`` propagates and nothing is stored. A cache folder that
        cannot be read or written (disk full, permissions) only costs the caching: the audio is
        still returned, with a warning.
        """
        key = cache_key(fields)
        with self._key_lock(key):
            try:
                cached = self.get(key)
            except OSError as e:
                log.warning("TTS cache %s unreadable (%s); synthesizing without it", self.directory, e)
                return create(), False
            if cached is not None:
                return cached, True
            audio = create()
            try:
                return self.put(key, audio, fields), False
            except OSError as e:
                log.warning("TTS cache %s: cannot store an entry (%s); returning it uncached", self.directory, e)
                return audio, False

    def stats(self) -> dict[str, Any]:
        """``{cache_size, max_cache_size, hits, misses, hit_rate, total_requests}``; hit_rate is
        hits / total_requests in 0..1 (0.0 before any request). Counters persist on disk."""
        with self._locked() as meta:
            hits, misses = meta["hits"], meta["misses"]
            total = hits + misses
            return {"cache_size": len(meta["entries"]), "max_cache_size": self.max_entries,
                    "hits": hits, "misses": misses, "hit_rate": hits / total if total else 0.0,
                    "total_requests": total}

    def cleanup(self) -> int:
        """Remove expired entries (and files no entry refers to); returns how many entries."""
        with self._locked() as meta:
            expired = [k for k, e in meta["entries"].items() if self._expired(e)]
            for key in expired:
                self._drop(meta, key, "expired")
            self._remove_orphans(meta)
            return len(expired)

    def clear(self) -> None:
        """Remove every entry and reset the hit/miss counters."""
        with self._locked() as meta:
            meta["entries"].clear()
            meta["hits"] = meta["misses"] = 0
            self._remove_orphans(meta)

    def __len__(self) -> int:
        with self._locked() as meta:
            return len(meta["entries"])

    # ---- internals ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Metadata under the folder's exclusive lock; written back if the block succeeds."""
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                meta, repaired = self._read_meta()
                before = json.dumps(meta, sort_keys=True)
                yield meta
                if repaired or json.dumps(meta, sort_keys=True) != before:
                    self._write_meta(meta)
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    def _read_meta(self) -> tuple[dict[str, Any], bool]:
        """(metadata, whether it had to be repaired and so must be written back)."""
        fresh: dict[str, Any] = {"version": _FORMAT_VERSION, "hits": 0, "misses": 0, "entries": {}}
        try:
            raw = self._meta_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return fresh, False
        try:
            meta = json.loads(raw)
            if not (isinstance(meta, dict) and meta.get("version") == _FORMAT_VERSION
                    and isinstance(meta.get("entries"), dict)):
                raise ValueError("unexpected layout")
            meta["hits"], meta["misses"] = int(meta.get("hits", 0)), int(meta.get("misses", 0))
        except (ValueError, TypeError) as e:
            # the audio files are unreachable without their index: start over rather than fail
            log.warning("TTS cache %s: metadata.json unreadable (%s); starting empty", self.directory, e)
            self._remove_orphans(fresh)
            return fresh, True
        bad = [k for k, e in meta["entries"].items() if not _valid_entry(e)]
        for key in bad:
            log.warning("TTS cache %s: dropping malformed metadata entry %s", self.directory, key[:12])
            self._drop(meta, key, "malformed")
        return meta, bool(bad)

    def _write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self._meta_path.with_name(f".metadata.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self._meta_path)
        finally:
            tmp.unlink(missing_ok=True)

    def _file(self, key: str) -> Path:
        return self._audio_dir / f"{key}.npy"

    def _expired(self, entry: Mapping[str, Any]) -> bool:
        return self.ttl_s is not None and self.clock() - entry["created"] > self.ttl_s

    def _load(self, key: str, entry: Mapping[str, Any]) -> Audio | None:
        try:
            samples = np.load(self._file(key), allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            log.warning("TTS cache: entry %s unreadable (%s)", key[:12], e)
            return None
        if (samples.dtype != np.float32 or samples.ndim != 1 or samples.shape[0] != entry["samples"]
                or zlib.crc32(samples.tobytes()) != entry["crc32"]):
            log.warning("TTS cache: entry %s does not match its metadata (corrupt file)", key[:12])
            return None
        return Audio(samples, int(entry["sample_rate"]))

    def _drop(self, meta: dict[str, Any], key: str, why: str) -> None:
        meta["entries"].pop(key, None)
        self._file(key).unlink(missing_ok=True)
        log.debug("TTS cache: removed %s (%s)", key[:12], why)

    def _evict(self, meta: dict[str, Any]) -> None:
        entries = meta["entries"]
        for key in [k for k, e in entries.items() if self._expired(e)]:
            self._drop(meta, key, "expired")
        excess = len(entries) - self.max_entries
        if excess > 0:
            lru = sorted(entries, key=lambda k: (entries[k]["last_access"], entries[k]["created"]))
            for key in lru[:excess]:
                self._drop(meta, key, "least recently used")

    def _remove_orphans(self, meta: Mapping[str, Any]) -> None:
        # every write happens under the lock we hold, so any unlisted file is debris
        for path in self._audio_dir.iterdir():
            if path.name.endswith(".tmp") or path.stem not in meta["entries"]:
                path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        with self._inflight_guard:
            slot = self._inflight.setdefault(key, [threading.Lock(), 0])
            slot[1] += 1
        try:
            with slot[0]:
                yield
        finally:
            with self._inflight_guard:
                slot[1] -= 1
                if slot[1] == 0:
                    del self._inflight[key]


def _valid_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    try:
        return (all(isinstance(entry[k], int | float) for k in ("created", "last_access"))
                and all(isinstance(entry[k], int) for k in ("samples", "sample_rate", "crc32"))
                and entry["sample_rate"] > 0)
    except KeyError:
        return False
