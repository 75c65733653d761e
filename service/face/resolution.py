"""At what size frames are handed to the detector, and how its boxes come back to the output frame.

The output frame is the input shrunk by ``resize_factor`` (official ``--resize_factor``), and
official Wav2Lip detects on it. That suits S3FD, but OpenCV's cascade needs faces well above
its 60 px minimum: on small frames it misses faces or finds false ones (see ``cascade``). So
each detector states the shorter frame side it is reliable from (``min_frame_side``); frames
are detected at that size, made from the full-resolution input, never larger than the input
and never smaller than the output frame, and the boxes are scaled to the output frame. Pads
are added afterwards, on the output frame, as official.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..types import FaceBox

Size = tuple[int, int]  # (height, width) px


def detection_size(source: Size, output: Size, min_side: int) -> Size:
    """(height, width) to detect at, for decoded input frames of ``source`` size, output
    frames of ``output`` size and a detector reliable from ``min_side`` px (shorter side).

    The output size itself when its shorter side reaches ``min_side``, or when the source is
    no larger (resize 1): then detection is exactly the official one.
    """
    if min(output) >= min_side or min(source) <= min(output):
        return output
    scale = min(1.0, min_side / min(source))
    return round(source[0] * scale), round(source[1] * scale)


def to_detection_size(frame: np.ndarray, size: Size) -> np.ndarray:
    """``frame`` (BGR uint8 [H, W, 3]) at ``size``; area-averaged, the right filter for shrinking."""
    if frame.shape[:2] == size:
        return frame
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def scale_box(box: FaceBox, source: Size, target: Size) -> FaceBox:
    """``box`` in a ``source``-sized frame, mapped to a ``target``-sized one (sides rounded half
    up, clipped to the frame)."""
    if source == target:
        return box
    sy, sx = target[0] / source[0], target[1] / source[1]

    def half_up(v: float) -> int:
        return math.floor(v + 0.5)

    return FaceBox(half_up(box.top * sy), half_up(box.bottom * sy), half_up(box.left * sx),
                   half_up(box.right * sx)).clipped(*target)
