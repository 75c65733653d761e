"""Decoded input frames kept in memory between requests for the same input video.

The optimized service sees the same user video again and again, with a different word each
time. Decoding 1080p H.264 and resizing it costs ~4 ms a frame of the same two cores that run
Wav2Lip, so the frames (after ``resize_factor``) are kept, under one process-wide memory
budget: a repeat request replays them from memory. Frames are recorded in order as a request
decodes them; a later request that needs more than was recorded replays the prefix and
decodes the rest (skipping the recorded part without converting it).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Protocol, TypeVar

import numpy as np


class SizedImage(Protocol):
    @property
    def nbytes(self) -> int: ...


S = TypeVar("S", bound=SizedImage)


class MemoryBudget:
    """A byte budget shared by every :class:`FrameMemo` of a process (thread-safe)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = max(0, int(limit_bytes))
        self._used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self._used + n > self.limit:
                return False
            self._used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self._used = max(0, self._used - n)

    @property
    def used(self) -> int:
        return self._used


class FrameMemo:
    """The decoded frames ``0..k-1`` of one input at one resize factor.

    ``decode(start)`` must return an iterator over the input's frames from index ``start``.
    :meth:`open` is a drop-in frame source for the lip-sync engine: it yields fresh copies
    (the engine pastes into the frames it gets), so the memo itself never changes.
    :meth:`converted` keeps one conversion of each recorded frame (the encoder's yuv420p), so a
    repeat render converts only the pixels it changed.
    """

    def __init__(self, decode: Callable[[int], Iterator[np.ndarray]], budget: MemoryBudget) -> None:
        self._decode = decode
        self._budget = budget
        self._frames: list[np.ndarray] = []
        self._bytes = 0
        self._complete = False  # the whole input is recorded
        self._full = False      # the budget refused a frame: stop recording
        self._converted: dict[tuple[Hashable, int], SizedImage] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def complete(self) -> bool:
        return self._complete

    def covers(self, n: int) -> bool:
        """Whether the first ``n`` frames (or the whole input) can come from memory."""
        return self._complete or len(self._frames) >= n

    def open(self) -> Iterator[np.ndarray]:
        """Yield every frame of the input, from memory as far as recorded, then decoded."""
        i = 0
        while True:
            with self._lock:
                frame = self._frames[i] if i < len(self._frames) else None
                done = frame is None and self._complete
            if done:
                return
            if frame is None:
                break
            yield frame.copy()
            i += 1
        frames = self._decode(i)
        try:
            for frame in frames:
                self._record(i, frame)
                yield frame
                i += 1
            with self._lock:
                if i == len(self._frames):
                    self._complete = True
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    def converted(self, index: int, key: Hashable, convert: Callable[[np.ndarray], S]) -> S | None:
        """``convert(frame index)``, computed once per ``key`` and kept while the budget allows
        (beyond it, computed on every call); None for a frame that is not recorded."""
        with self._lock:
            hit = self._converted.get((key, index))
            frame = self._frames[index] if index < len(self._frames) else None
        if hit is not None:
            return hit  # type: ignore[return-value]
        if frame is None:
            return None
        image = convert(frame)
        if not self._budget.take(image.nbytes):
            return image
        with self._lock:
            if self._frames and (key, index) not in self._converted:
                self._converted[(key, index)] = image
                self._bytes += image.nbytes
                return image
        self._budget.give(image.nbytes)  # released meanwhile, or another thread was first
        return image

    def _record(self, index: int, frame: np.ndarray) -> None:
        with self._lock:
            # only the next frame in order; a concurrent reader may already have added it
            if self._full or index != len(self._frames):
                return
            if not self._budget.take(frame.nbytes):
                self._full = True
                return
            self._frames.append(frame.copy())
            self._bytes += frame.nbytes

    def release(self) -> None:
        """Drop the frames and return their bytes to the budget."""
        with self._lock:
            self._frames.clear()
            self._converted.clear()
            self._budget.give(self._bytes)
            self._bytes = 0
            self._complete = False
            self._full = False
