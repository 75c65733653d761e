"""Which detections are the face: plausible boxes that agree across the sampled frames.

A detector answers frame by frame, and on a small or busy frame it also answers on the
background (OpenCV's cascade on the 426x240 frame of a 720p clip at resize 3 was reported taking
the rocket beside the astronaut for a face). One hit among many misses is not a face. The rule:

1. **plausible**: the box's shorter side is at least ``MIN_FACE_FRACTION`` of the frame's
   shorter side, and its sides are within ``MAX_ASPECT`` of each other;
2. **agreeing**: plausible boxes are chained in frame order: a box joins the chain whose latest
   box it overlaps most, when that overlap (IoU) is at least ``LINK_IOU``, else it starts a
   chain of its own; frames without a box in between do not break a chain (the face may be
   missed for a while). The face is the longest chain (the earliest one on a tie); the boxes of
   every other chain are misses. Chaining, rather than comparing with one median box, lets a
   face move (per-frame, keyframe) while false hits, which jump around, stay apart;
3. **enough**: at least ``MIN_AGREEING`` (half) of the checked frames must be in the face's
   chain, or the input has no usable face.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ..types import FaceBox

MIN_FACE_FRACTION = 0.05  # of the frame's shorter side: smaller boxes are specks, not faces
MAX_ASPECT = 2.0  # longer side / shorter side; a face half out of the frame is about 2
LINK_IOU = 0.5  # overlap of two boxes of the same face in sampled frames (PASCAL's "same object")
MIN_AGREEING = 0.5  # fraction of the checked frames that must show the agreeing face


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    inter = max(0, min(a.bottom, b.bottom) - max(a.top, b.top)) * max(0, min(a.right, b.right) - max(a.left, b.left))
    union = a.height * a.width + b.height * b.width - inter
    return inter / union if union > 0 else 0.0


def is_plausible(box: FaceBox, height: int, width: int) -> bool:
    """Whether ``box`` could be a face in a ``height`` x ``width`` frame (size and shape only)."""
    short, long = sorted((box.height, box.width))
    return short >= MIN_FACE_FRACTION * min(height, width) and long <= MAX_ASPECT * short


def agreeing_boxes(found: Mapping[int, FaceBox | None], height: int, width: int) -> dict[int, FaceBox]:
    """The boxes of the face's chain, by frame index (see the module docstring).

    ``found``: the detector's raw box (or None) per checked frame, in pixels of the
    ``height`` x ``width`` frame it ran on. Empty when no box is plausible.
    """
    chains: list[dict[int, FaceBox]] = []
    for i in sorted(found):
        box = found[i]
        if box is None or not is_plausible(box, height, width):
            continue
        overlaps = [iou(box, chain[max(chain)]) for chain in chains]
        best = int(np.argmax(overlaps)) if overlaps else -1
        if best >= 0 and overlaps[best] >= LINK_IOU:
            chains[best][i] = box
        else:
            chains.append({i: box})
    # max() keeps the first of equally long chains, and chains are in order of their first frame
    return max(chains, key=len) if chains else {}


def enough_agree(agreeing: int, checked: int) -> bool:
    """Whether ``agreeing`` of ``checked`` frames is enough to call it the input's face."""
    return checked > 0 and agreeing >= MIN_AGREEING * checked


def median_box(boxes: Iterable[FaceBox]) -> FaceBox:
    """Per-side median of ``boxes`` (each side rounded half up): the consensus of a chain."""
    sides = np.array([[b.top, b.bottom, b.left, b.right] for b in boxes], dtype=np.float64)
    if sides.size == 0:
        raise ValueError("median_box needs at least one box")
    top, bottom, left, right = (int(np.floor(v + 0.5)) for v in np.median(sides, axis=0))
    return FaceBox(top, bottom, left, right)
