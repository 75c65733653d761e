"""The detector interface every face detector implements."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..types import FaceBox


@runtime_checkable
class FaceDetector(Protocol):
    """Finds one face per frame.

    ``detect`` takes BGR uint8 frames ``[H, W, 3]`` (all the same size) and returns, per
    frame, the detector's raw rectangle in pixels of that frame (no pads, clipped to the
    frame), the most prominent face when there are several, or None when it finds no face.

    ``min_frame_side``: the shorter frame side (px) from which the detector is reliable; the
    strategies hand it frames at least that size when the input has the pixels
    (:mod:`service.face.resolution`), 0 for "any size".
    """

    name: str
    min_frame_side: int

    def detect(self, frames: Sequence[np.ndarray]) -> list[FaceBox | None]: ...


def box_or_none(x1: int, y1: int, x2: int, y2: int, height: int, width: int) -> FaceBox | None:
    """A :class:`FaceBox` from corner coordinates, clipped to a ``height`` x ``width`` frame.

    None when nothing of the rectangle is left inside the frame (a crop of it would be empty).
    """
    box = FaceBox(y1, y2, x1, x2).clipped(height, width)
    if box.height < 1 or box.width < 1:
        return None
    return box
