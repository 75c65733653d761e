"""When to run the detector, and how its boxes become one padded box per frame.

* ``per-frame``: the official behaviour: detect every frame, pad, then the official 5-frame
  smoothing unless ``smooth=False`` (``--nosmooth``).
* ``static``: detect on ``STATIC_SAMPLES`` frames spread evenly over the video and reuse one
  box for every frame (the customer's "static face box"): the box of the first sampled frame
  whose face agrees with the others, so a video whose first frame shows the face keeps the
  box it always had.
* ``keyframe``: detect every ``keyframe_interval`` frames and on the last frame; boxes in
  between are interpolated linearly.

Which boxes count is decided by :mod:`.consensus`: a box that is implausible or disagrees
with the other sampled frames is a miss, and fewer than half of the checked frames with the
agreeing face raises :class:`NoFaceError` (never paste onto the background). Deliberate
deviation: the official code aborts the whole job on one frame without a face. Here a miss
reuses the nearest good box (per-frame), or is left out of the interpolation (keyframe:
frames between two good keyframes interpolate across the missed one; frames before the first
or after the last good keyframe take its box).

Frames are detected at the size :mod:`.resolution` picks for the detector (given frames larger
than that are shrunk, only the sampled ones) and the boxes are scaled to ``out_size``, the
resized frame the lip-sync pastes on, where the pads are added.

Frames can be streamed: pass a zero-argument callable that starts a decode from frame 0 and
yields the frames; only the sampled frames are handed to the detector, at most
``DETECT_CHUNK`` of them held at once, and decoding stops after the last sampled frame (for
``static``, as soon as the agreeing frames are a majority of all samples: the rest could not
change the box). A list (or array) of frames works too.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import MediaError, NoFaceError
from ..types import FaceBox
from .base import FaceDetector
from .boxes import DEFAULT_PADS, fill_nearest, interpolate_boxes, pad_box, smooth_boxes
from .consensus import LINK_IOU, agreeing_boxes, enough_agree, iou, median_box
from .report import FaceDetection
from .resolution import Size, detection_size, scale_box, to_detection_size

log = logging.getLogger(__name__)

FrameOpener = Callable[[], Iterable[np.ndarray]]
FrameSource = Sequence[np.ndarray] | np.ndarray | FrameOpener
STRATEGIES = ("per-frame", "static", "keyframe")
DEFAULT_KEYFRAME_INTERVAL = 10  # frames
DETECT_CHUNK = 16  # frames handed to the detector at once (official --face_det_batch_size)
STATIC_SAMPLES = 5  # frames checked by "static"; odd, so 3 agreeing settle it early


@dataclass(frozen=True)
class FaceBoxes:
    """One padded box per frame on the output frame, and what detection found."""

    boxes: list[FaceBox]
    report: FaceDetection


def face_boxes(frames: FrameSource, n_frames: int, detector: FaceDetector, strategy: str = "static",
               pads: Sequence[int] = DEFAULT_PADS, smooth: bool = True,
               keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL, source_name: str = "the input",
               out_size: Size | None = None) -> FaceBoxes:
    """One padded face box per frame, ``n_frames`` of them, with the detection report.

    ``frames``: BGR uint8 ``[H, W, 3]`` frames, an opener (a zero-argument callable returning
    an iterator from frame 0, for streaming) or a sequence; at full resolution, or already at
    ``out_size``. ``out_size`` (height, width): the frame the boxes are for (the input after
    ``resize_factor``); None means the frames' own size. ``pads`` (top, bottom, left, right)
    px of the output frame are added to every detector box and the result clipped to it, as
    official. ``smooth`` applies to ``per-frame`` only. ``source_name`` names the input in
    errors.

    Raises :class:`NoFaceError` when fewer than half of the checked frames show a face that
    agrees with the others, :class:`MediaError` when no frame can be read, ValueError for a
    bad strategy, count or interval.
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
    settled = _majority_of(len(indices)) if strategy == "static" else None
    found, source, detect_size = _detect_at(frames, indices, detector, out_size, settled, source_name)
    out = out_size or source
    agreeing = agreeing_boxes(found, *detect_size)
    if not enough_agree(len(agreeing), len(found)):
        hits = sum(b is not None for b in found.values())
        raise NoFaceError(
            f"no face found in {source_name} ({len(found)} frames checked with the {detector.name} detector, "
            f"{hits} with a detection, {len(agreeing)} showing a face that agrees with the others; at least "
            "half must): use a video where the face is visible and frontal throughout, or give the face box "
            "yourself: face_box [top, bottom, left, right] in the API, --box TOP BOTTOM LEFT RIGHT on the "
            "command line")
    good = {i: pad_box(scale_box(b, detect_size, out), pads, *out) for i, b in agreeing.items()}

    if strategy == "static":
        first = good[min(good)]
        boxes, shown = [first] * n_frames, first
        if any(iou(agreeing[min(agreeing)], b) < LINK_IOU for b in agreeing.values()):
            log.warning("the face in %s moves: one static box will not follow it (try the keyframe strategy)",
                        source_name)
    else:
        boxes = interpolate_boxes(good, n_frames) if strategy == "keyframe" else fill_nearest(good, n_frames)
        if strategy == "per-frame" and smooth:
            boxes = smooth_boxes(boxes)
        shown = median_box(good.values())
    report = FaceDetection(detector.name, len(found), len(good), shown)
    log.info("face boxes for %s: %s, %s detector at %dx%d, %d frames checked, %d with the face, box %s, %.3f s",
             source_name, strategy, detector.name, detect_size[1], detect_size[0], report.frames_checked,
             report.frames_with_face, report.as_dict()["box"], time.perf_counter() - started)
    misses = len(found) - len(good)
    if misses and strategy != "static":
        log.warning("%d of %d checked frames of %s show no face that agrees with the others; they reuse nearby "
                    "boxes", misses, len(found), source_name)
    return FaceBoxes(boxes, report)


def sample_indices(strategy: str, n_frames: int, keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL) -> list[int]:
    """The frame indices a strategy hands to the detector, ascending."""
    if strategy == "per-frame":
        return list(range(n_frames))
    if strategy == "static":
        return sorted({round(float(x)) for x in np.linspace(0, n_frames - 1, min(STATIC_SAMPLES, n_frames))})
    return sorted(set(range(0, n_frames, keyframe_interval)) | {n_frames - 1})


Settled = Callable[[Mapping[int, FaceBox | None], Size], bool]


def _majority_of(n_samples: int) -> Settled:
    """True once the face's chain holds more than half of all ``n_samples``: the frames not yet
    read could then neither refuse the input, nor make another chain as long, nor move its start."""
    def settled(found: Mapping[int, FaceBox | None], size: Size) -> bool:
        return 2 * len(agreeing_boxes(found, *size)) > n_samples
    return settled


def _detect_at(frames: FrameSource, indices: list[int], detector: FaceDetector, out_size: Size | None,
               settled: Settled | None, source_name: str) -> tuple[dict[int, FaceBox | None], Size, Size]:
    """Run ``detector`` on the frames at ``indices`` (ascending), in chunks.

    Returns the result per frame actually read (a stream may end early; its missing frames
    are simply not in the dict), the frames' size and the size they were detected at. With
    ``settled`` frames are detected one at a time and reading stops once it returns True.
    """
    found: dict[int, FaceBox | None] = {}
    sizes: tuple[Size, Size] | None = None
    chunk_size = 1 if settled else DETECT_CHUNK
    picked = _pick(frames, indices)
    try:
        while True:
            chunk = list(itertools.islice(picked, chunk_size))
            if not chunk:
                break
            if sizes is None:
                source = (int(chunk[0][1].shape[0]), int(chunk[0][1].shape[1]))
                sizes = source, detection_size(source, out_size or source, detector.min_frame_side)
            images = [to_detection_size(f, sizes[1]) for _, f in chunk]
            found.update(zip([i for i, _ in chunk], detector.detect(images), strict=True))
            if settled is not None and settled(found, sizes[1]):
                break
    finally:
        picked.close()
    if sizes is None:
        raise MediaError(f"no frames could be read from {source_name}")
    if settled is None and len(found) < len(indices):
        log.warning("%s ended after frame %d; %d sampled frames were not there",
                    source_name, max(found), len(indices) - len(found))
    return found, *sizes


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
