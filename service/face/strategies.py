"""When to run the detector, and how its boxes become one padded box per frame.

* ``per-frame``: the official behaviour: detect every frame, pad, then the official 5-frame
  smoothing unless ``smooth=False`` (``--nosmooth``).
* ``static``: detect on the first frame and reuse that box for every frame (the customer's
  "static face box"); when the first frame has no face, up to ``STATIC_TRIES`` frames spread
  evenly over the video are tried in order and the first hit is used.
* ``keyframe``: detect every ``keyframe_interval`` frames and on the last frame; boxes in
  between are interpolated linearly.

Deliberate deviation: the official code aborts the whole job on one frame without a face.
Here a miss reuses the nearest good box (per-frame), or is left out of the interpolation
(keyframe: frames between two good keyframes interpolate across the missed one; frames
before the first or after the last good keyframe take its box). Only when no sampled frame
has a face does :func:`face_boxes` raise :class:`NoFaceError`.

Frames can be streamed: pass a zero-argument callable that starts a decode from frame 0 and
yields the (already resized) frames; only the sampled frames are handed to the detector, at
most ``DETECT_CHUNK`` of them held at once, and decoding stops after the last sampled
frame. A list (or array) of frames works too.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import MediaError, NoFaceError
from ..types import FaceBox
from .base import FaceDetector
from .boxes import DEFAULT_PADS, fill_nearest, interpolate_boxes, pad_box, smooth_boxes

log = logging.getLogger(__name__)

FrameOpener = Callable[[], Iterable[np.ndarray]]
FrameSource = Sequence[np.ndarray] | np.ndarray | FrameOpener
STRATEGIES = ("per-frame", "static", "keyframe")
DEFAULT_KEYFRAME_INTERVAL = 10  # frames
DETECT_CHUNK = 16  # frames handed to the detector at once (official --face_det_batch_size)
STATIC_TRIES = 10  # frames tried by "static" before giving up


def face_boxes(frames: FrameSource, n_frames: int, detector: FaceDetector, strategy: str = "static",
               pads: Sequence[int] = DEFAULT_PADS, smooth: bool = True,
               keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL, source_name: str = "the input") -> list[FaceBox]:
    """One padded face box per frame, ``n_frames`` of them.

    ``frames``: BGR uint8 ``[H, W, 3]`` frames, already resized by ``resize_factor``: an
    opener (a zero-argument callable returning an iterator from frame 0, for streaming) or
    a sequence. ``pads`` (top, bottom, left, right) px are added to every detector box and
    the result clipped to the frame, as official. ``smooth`` applies to ``per-frame`` only.
    ``source_name`` names the input in errors.

    Raises :class:`NoFaceError` when no sampled frame has a face, :class:`MediaError` when
    no frame can be read, ValueError for a bad strategy, count or interval.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown face strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if keyframe_interval < 1:
        raise ValueError(f"keyframe_interval must be at least 1, got {keyframe_interval}")
    if len(pads) != 4:
        raise ValueError(f"pads must be 4 numbers (top, bottom, left, right), got {list(pads)}")

    started = time.perf_counter()
    indices = sample_indices(strategy, n_frames, keyframe_interval)
    found, shape = _detect_at(frames, indices, detector, stop_at_first=strategy == "static", source_name=source_name)
    good = {i: pad_box(b, pads, *shape) for i, b in found.items() if b is not None}
    if not good:
        raise NoFaceError(f"no face found in {source_name} ({len(found)} frames checked with the {detector.name} "
                          "detector): try a frame where the face is visible and frontal, "
                          "or pass --box TOP BOTTOM LEFT RIGHT")
    misses = len(found) - len(good)
    log.info("face boxes for %s: %s, %s detector, %d frames checked, %d without a face, %.3f s",
             source_name, strategy, detector.name, len(found), misses, time.perf_counter() - started)
    if misses and strategy != "static":
        log.warning("%d of %d checked frames of %s have no face; they reuse nearby boxes",
                    misses, len(found), source_name)

    if strategy == "static":
        return [good[min(good)]] * n_frames
    if strategy == "keyframe":
        return interpolate_boxes(good, n_frames)
    boxes = fill_nearest(good, n_frames)
    return smooth_boxes(boxes) if smooth else boxes


def sample_indices(strategy: str, n_frames: int, keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL) -> list[int]:
    """The frame indices a strategy hands to the detector, ascending."""
    if strategy == "per-frame":
        return list(range(n_frames))
    if strategy == "static":
        return sorted({round(float(x)) for x in np.linspace(0, n_frames - 1, min(STATIC_TRIES, n_frames))})
    return sorted(set(range(0, n_frames, keyframe_interval)) | {n_frames - 1})


def _detect_at(frames: FrameSource, indices: list[int], detector: FaceDetector, stop_at_first: bool,
               source_name: str) -> tuple[dict[int, FaceBox | None], tuple[int, int]]:
    """Run ``detector`` on the frames at ``indices`` (ascending), in chunks.

    Returns the result per frame actually read (a stream may end early; its missing frames
    are simply not in the dict) and the frame size (height, width). With ``stop_at_first``
    frames are detected one at a time and reading stops at the first face.
    """
    found: dict[int, FaceBox | None] = {}
    shape: tuple[int, int] | None = None
    chunk_size = 1 if stop_at_first else DETECT_CHUNK
    picked = _pick(frames, indices)
    try:
        while True:
            chunk = list(itertools.islice(picked, chunk_size))
            if not chunk:
                break
            shape = shape or (int(chunk[0][1].shape[0]), int(chunk[0][1].shape[1]))
            found.update(zip([i for i, _ in chunk], detector.detect([f for _, f in chunk]), strict=True))
            if stop_at_first and any(b is not None for b in found.values()):
                break
    finally:
        picked.close()
    if shape is None:
        raise MediaError(f"no frames could be read from {source_name}")
    if not stop_at_first and len(found) < len(indices):
        log.warning("%s ended after frame %d; %d sampled frames were not there",
                    source_name, max(found), len(indices) - len(found))
    return found, shape


def _pick(frames: FrameSource, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) for each wanted index that exists, reading a stream only as far as needed."""
    if not callable(frames):
        for i in indices:
            if i < len(frames):
                yield i, frames[i]
        return
    wanted = set(indices)
    stream = iter(frames())
    try:
        for i, frame in enumerate(itertools.islice(stream, max(indices) + 1)):
            if i in wanted:
                yield i, frame
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
