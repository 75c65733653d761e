"""Face boxes for every source frame, by strategy: a user ``--box``, or a detector."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..media import MediaInfo, iter_frames
from ..timing import StageTimer
from .engine import BoxPlan, BoxPlanner, SyncOptions

if TYPE_CHECKING:
    from ..face import FaceDetector


def make_box_planner(weights_dir: Path, device: str = "cpu") -> BoxPlanner:
    """A :data:`engine.BoxPlanner` that detects with ``opts.detector`` (created once, lazily).

    Boxes are for the frame after ``resize_factor``. Frames are decoded at full resolution and
    only the sampled ones are shrunk (area filter) to the size the detector is reliable at
    (:mod:`service.face.resolution`): the resized frame's size when that is big enough, and at
    resize 1 the frames themselves, as official.
    """
    detectors: dict[str, FaceDetector] = {}

    def plan(face: Path, info: MediaInfo, n_out: int, opts: SyncOptions, timer: StageTimer,
             resized: Callable[[], Iterator[np.ndarray]] | None = None) -> BoxPlan:
        """``resized``: the render's own source of frames after ``resize_factor`` (e.g. a
        :class:`FrameMemo`); when the detector works at that size, detection reads them there,
        so the frames it decodes are the ones the render then replays, not a second decode."""
        from ..face import FaceDetection, face_boxes, make_detector, parse_box
        from ..face.resolution import detection_size

        rf = opts.resize_factor
        out = (info.height // rf, info.width // rf)
        if opts.box is not None:
            box = parse_box(opts.box, *out)
            return BoxPlan([box], FaceDetection.given(box))
        with timer.stage("detect"):
            if opts.detector not in detectors:
                detectors[opts.detector] = make_detector(opts.detector, weights_dir, device)
            detector = detectors[opts.detector]
            # the official code detects only on the frames it will write
            n_src = min(n_out, max(1, info.frame_count))
            if resized is not None and detection_size((info.height, info.width), out,
                                                      detector.min_frame_side) == out:
                source: Callable[[], Iterator[np.ndarray]] = lambda: _first(resized, n_src)  # noqa: E731
            else:
                # full resolution: only the sampled frames are shrunk, to the size the detector needs
                source = lambda: iter_frames(face, stop=n_src)  # noqa: E731
            found = face_boxes(
                source, n_src, detector,
                strategy=opts.strategy, pads=opts.pads, smooth=opts.smooth,
                keyframe_interval=opts.keyframe_interval, source_name=str(face), out_size=out)
        return BoxPlan(found.boxes, found.report)

    return plan


def _first(open_frames: Callable[[], Iterator[np.ndarray]], n: int) -> Iterator[np.ndarray]:
    """The first ``n`` frames of a fresh pass, closing the pass when done or abandoned."""
    frames = open_frames()
    try:
        yield from itertools.islice(frames, n)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
