"""Which input frame each output frame shows, and a streaming source that serves them.

The official code plays input frame ``i % L`` for output frame ``i`` (a video shorter than
the audio loops). We stream instead of holding the video in memory: frames are decoded
once, in order, and only a video that must be replayed backwards (``pingpong``) keeps its
frames after they are used.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np

LoopMode = Literal["loop", "pingpong"]


def source_index(i: int, length: int, mode: LoopMode) -> int:
    """Input frame shown at output frame ``i`` of a video with ``length`` frames."""
    if length <= 1:
        return 0
    if mode == "loop":
        return i % length
    period = 2 * length - 2  # 0 1 2 .. L-1 L-2 .. 1 | 0 1 ..
    k = i % period
    return k if k < length else period - k


def stream_output_frames(open_frames: Callable[[], Iterator[np.ndarray]], n_out: int,
                         mode: LoopMode, expect_short: bool = False) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(output index, source index, frame)`` for ``n_out`` output frames.

    ``open_frames`` starts a fresh decode of the input from frame 0. A looping video that
    runs out is decoded again from the start; a ``pingpong`` one is replayed from memory,
    kept while streaming when ``expect_short`` (the probe says the video is shorter than the
    output), else decoded a second time into memory. Yielded frames may be modified.
    """
    cache: list[np.ndarray] | None = [] if mode == "pingpong" and expect_short else None
    produced = 0
    frames = open_frames()
    try:
        for frame in frames:
            if produced == n_out:
                return
            if cache is not None:
                cache.append(frame)
                frame = frame.copy()
            yield produced, produced, frame
            produced += 1
        length = produced
        if length == 0:
            raise ValueError("the face input yielded no frames")
        if mode == "pingpong" and cache is None:
            cache = list(open_frames())
        while produced < n_out:
            s = source_index(produced, length, mode)
            if cache is not None:
                yield produced, s, cache[s].copy()
            else:
                if s == 0:
                    _close(frames)
                    frames = open_frames()
                frame = next(frames, None)
                if frame is None:
                    raise ValueError("the face input has fewer frames on a second read")
                yield produced, s, frame
            produced += 1
    finally:
        _close(frames)


def _close(frames: Iterator[np.ndarray]) -> None:
    close = getattr(frames, "close", None)
    if close is not None:
        close()
