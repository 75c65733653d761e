"""Opening media files with PyAV, and the few facts about them every other module shares.

Every failure to open becomes a one-line :class:`MediaError` naming the file and saying what to
give instead, so callers never see a raw ``av.error`` (the CLI and the API map ``MediaError`` to
"bad input").
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import av
import av.container

from service.errors import MediaError

# Decoded with OpenCV (cv2.imread semantics: EXIF orientation applied, alpha dropped), not FFmpeg.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

# NTSC-family rates are 1000/1001 multiples; a float like 29.97 means 30000/1001, not 2997/100.
_NTSC_BASES = (24, 30, 48, 60, 120)

PathLike = str | os.PathLike[str]


def is_image_path(path: PathLike) -> bool:
    """True for the still-image suffixes the service decodes as a single frame."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def require_file(path: PathLike) -> Path:
    """The path as a :class:`Path`, or :class:`MediaError` if it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p} does not exist; check the path")
    if not p.is_file():
        raise MediaError(f"{p} is not a file; give a video, image or audio file")
    return p


def open_input(path: PathLike, want: str) -> av.container.InputContainer:
    """Open ``path`` for reading; ``want`` ("a video or image" / "an audio file") goes in errors."""
    p = require_file(path)
    try:
        return av.open(str(p), "r")
    except av.FFmpegError as e:
        raise MediaError(f"{p} is not {want} (FFmpeg cannot read it: {describe_error(e)}); "
                         f"give {want} in a common format") from e


def as_frame_rate(fps: float | Fraction) -> Fraction:
    """An exact frame rate for a muxer time base: 25 -> 25/1, 29.97 -> 30000/1001.

    A :class:`Fraction` (e.g. :attr:`MediaInfo.frame_rate`) is kept as is.
    """
    if isinstance(fps, Fraction):
        rate = fps
    else:
        value = float(fps)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        rate = Fraction(value).limit_denominator(1001)
        for base in _NTSC_BASES:
            ntsc = Fraction(base * 1000, 1001)
            if abs(value - float(ntsc)) < 0.005:
                rate = ntsc
                break
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return rate


def describe_error(e: Exception) -> str:
    """FFmpeg errors repeat the file name and errno; keep the human part on one line."""
    text = getattr(e, "strerror", None) or str(e)
    return " ".join(str(text).split())
