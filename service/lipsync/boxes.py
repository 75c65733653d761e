"""Face boxes for every source frame, by strategy: a user ``--box``, or a detector."""
from __future__ import annotations

from pathlib import Path

from ..media import MediaInfo, iter_frames
from ..timing import StageTimer
from .engine import BoxPlan, SyncOptions


def make_box_planner(weights_dir: Path, device: str = "cpu"):
    """A :data:`engine.BoxPlanner` that detects with ``opts.detector`` (created once, lazily)."""
    detectors: dict[str, object] = {}

    def plan(face: Path, info: MediaInfo, n_out: int, opts: SyncOptions, timer: StageTimer) -> BoxPlan:
        from ..face import face_boxes, make_detector, parse_box

        rf = opts.resize_factor
        height, width = info.height // rf, info.width // rf
        if opts.box is not None:
            return BoxPlan([parse_box(opts.box, height, width)])
        with timer.stage("detect"):
            if opts.detector not in detectors:
                detectors[opts.detector] = make_detector(opts.detector, weights_dir, device)
            # the official code detects only on the frames it will write
            n_src = min(n_out, max(1, info.frame_count))
            boxes = face_boxes(
                lambda: iter_frames(face, resize_factor=rf, stop=n_src), n_src,
                detectors[opts.detector], strategy=opts.strategy, pads=opts.pads, smooth=opts.smooth,
                keyframe_interval=opts.keyframe_interval, source_name=str(face))
        return BoxPlan(boxes)

    return plan
