"""In-memory LRU cache of speaker embeddings, keyed by a hash of the reference audio.

The user's own video is the target speaker for every request on it, so its embedding is
computed once. The key covers everything that changes the embedding: the reference samples
and rate, the FreeVC config (which encoder), the identity of that encoder's weights, its
device and dtype, and the trimming threshold. The service keeps its own per-input-video cache
on top (keyed by the object's GCS generation, checked before downloading); both layers stay.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_ENTRIES = 256   # 256 x 1 KiB embeddings: memory is not the limit, staleness is


@dataclass(frozen=True)
class CacheInfo:
    """Counters of an :class:`EmbeddingCache` (like ``functools.lru_cache``'s ``cache_info()``)."""

    hits: int
    misses: int
    size: int
    max_size: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def reference_key(samples: np.ndarray, sample_rate: int, context: str) -> str:
    """SHA-256 hex of the float32 samples, their rate and ``context`` (config, weights, options)."""
    h = hashlib.sha256()
    h.update(f"{context}|{sample_rate}|{samples.shape[0]}|".encode())
    h.update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """Thread-safe bounded LRU: key -> speaker embedding g, float32 (256,), kept on the CPU."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._max = max_entries
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: str) -> np.ndarray | None:
        """The cached embedding (a read-only array) or None; counts a hit or a miss."""
        with self._lock:
            g = self._items.get(key)
            if g is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return g

    def put(self, key: str, g: np.ndarray) -> np.ndarray:
        """Store a read-only copy of ``g`` (returned), evicting the least recently used entry when full."""
        value = np.array(g, dtype=np.float32, copy=True)
        value.setflags(write=False)   # shared between callers: nobody may change it in place
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        return value

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._items), self._max)

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._items.clear()
            self._hits = self._misses = 0
