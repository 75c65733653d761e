"""OpenCV's bundled frontal-face Haar cascade: the offline default detector.

It needs no weights file (the cascade ships inside ``opencv-python-headless<5``; OpenCV 5
dropped it) and runs on the CPU. The parameters are fixed to the ones the reference box in
``face_dev_box.json`` was made with: ``detectMultiScale(gray, 1.1, 5, minSize=(60, 60))``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..types import FaceBox
from .base import box_or_none

CASCADE_FILE = "haarcascade_frontalface_default.xml"
SCALE_FACTOR = 1.1  # image pyramid step
MIN_NEIGHBORS = 5  # overlapping hits a detection needs
MIN_SIZE = 60  # px: smallest face searched, on the frame as given
# px, shorter frame side to detect at: a face a sixth of the frame high (a talking head) is then
# MIN_SIZE or more. Below, faces sink to MIN_SIZE: on the 240 px frame of a 720p clip at resize 3
# the cascade was reported taking background for faces; at 160 px (480p) it misses the face
RELIABLE_FRAME_SIDE = 360


class OpenCVCascadeDetector:
    """Haar cascade face detector; the largest face (by area) wins when there are several.

    ``max_side`` (px): detect on a copy scaled (INTER_AREA) so that its longer side is at
    most this, and scale the box back. Several times faster on 1080p frames, but the box can
    move by a few pixels compared with full resolution; None (default) keeps full resolution
    and the exact reference box. The minimum face size scales with the copy, so it stays
    ``MIN_SIZE`` px of the original frame.
    """

    name = "opencv"
    min_frame_side = RELIABLE_FRAME_SIDE

    def __init__(self, max_side: int | None = None) -> None:
        if max_side is not None and max_side < MIN_SIZE:
            raise ValueError(f"max_side must be at least {MIN_SIZE} px, got {max_side}")
        path = Path(cv2.data.haarcascades) / CASCADE_FILE
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV's face cascade is missing or unreadable ({path}); "
                               "install opencv-python-headless<5")
        self.max_side = max_side

    def detect(self, frames: Sequence[np.ndarray]) -> list[FaceBox | None]:
        """One raw box (or None) per BGR uint8 frame ``[H, W, 3]``."""
        return [self._detect_one(f) for f in frames]

    def _detect_one(self, frame: np.ndarray) -> FaceBox | None:
        height, width = frame.shape[:2]
        scale = 1.0
        image = frame
        if self.max_side is not None and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        min_side = max(1, round(MIN_SIZE * scale))
        faces = self._cascade.detectMultiScale(gray, SCALE_FACTOR, MIN_NEIGHBORS, minSize=(min_side, min_side))
        if len(faces) == 0:
            return None
        x, y, w, h = (float(v) for v in max(faces, key=lambda r: int(r[2]) * int(r[3])))
        if scale != 1.0:
            x, y, w, h = x / scale, y / scale, w / scale, h / scale
        return box_or_none(round(x), round(y), round(x + w), round(y + h), height, width)
