"""Display rotation: read it the way FFmpeg's autorotate does, and apply it to BGR frames."""
from __future__ import annotations

import logging

import av
import av.video.stream
import cv2
import numpy as np

log = logging.getLogger(__name__)

_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def stream_rotation(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Clockwise display rotation of a decoded ``frame`` of ``stream`` (see :func:`clockwise_rotation`)."""
    return clockwise_rotation(frame.rotation, stream.metadata.get("rotate"))


def clockwise_rotation(display_ccw: float | None, rotate_tag: str | None = None) -> int:
    """Degrees (0, 90, 180 or 270) to turn a frame clockwise for display.

    ``display_ccw`` is the display matrix's counter-clockwise angle (``VideoFrame.rotation``,
    what ffprobe prints as ``rotation``); ``rotate_tag`` the legacy ``rotate`` metadata of older
    muxers, already clockwise, used when there is no matrix. Angles not within 1 degree of a
    right angle are ignored, as FFmpeg's autorotate does.
    """
    ccw = float(display_ccw or 0)
    degrees = -ccw
    if ccw == 0:
        tag = rotate_tag
        if tag:
            try:
                degrees = float(tag)
            except ValueError:
                log.warning("ignoring unparsable rotate tag %r", tag)
    degrees %= 360
    nearest = round(degrees / 90.0) * 90 % 360
    if abs((degrees - nearest + 180) % 360 - 180) > 1:
        log.warning("display rotation of %.1f degrees is not a right angle; frames are not rotated",
                    degrees)
        return 0
    return nearest


def rotate_clockwise(image: np.ndarray, degrees: int) -> np.ndarray:
    """``image`` [H, W, C] turned clockwise by 0/90/180/270 degrees (a contiguous copy, or itself)."""
    if degrees == 0:
        return image
    return cv2.rotate(image, _ROTATE[degrees])
