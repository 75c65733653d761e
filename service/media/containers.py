"""Opening media files with PyAV, and the few facts about them every other module shares.

Inputs are opened only in a format recognised from their content (:mod:`.sniff`), with that
one demuxer forced. Every failure to open becomes a one-line :class:`MediaError` naming the file
and saying what to give instead, so callers never see a raw ``av.error`` (the CLI and the API
map ``MediaError`` to "bad input").
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import av.container

from service.errors import MediaError

from .sniff import Format, PathLike, sniff_format

# what the service takes, said the same way in every refusal
FACE_FORMATS = "an mp4/mov, webm/mkv or avi video, or a jpg/png/bmp/webp image"
AUDIO_FORMATS = "a wav, mp3, flac, ogg or m4a file, or an mp4/mov, webm/mkv or avi video with sound"

# NTSC-family rates are 1000/1001 multiples; a float like 29.97 means 30000/1001, not 2997/100.
_NTSC_BASES = (24, 30, 48, 60, 120)


def require_file(path: PathLike) -> Path:
    """The path as a :class:`Path`, or :class:`MediaError` if it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p} does not exist; check the path")
    if not p.is_file():
        raise MediaError(f"{p} is not a file; give a video, image or audio file")
    return p


def face_format(path: PathLike) -> Format:
    """The format of a face input (kind "video" or "image"), by content.

    Raises :class:`MediaError` for a missing file, an audio file (it has no frames) and
    anything outside the allowlist, whatever its name.
    """
    p = require_file(path)
    fmt = _sniff(p)
    if fmt.kind == "audio":
        raise MediaError(f"{p} has no frames (it is {fmt.name} audio); give {FACE_FORMATS}")
    if fmt.kind not in ("video", "image"):
        raise MediaError(f"{p} is not a video or image in a supported format (it is {fmt.name}); "
                         f"give {FACE_FORMATS}")
    return fmt


def audio_format(path: PathLike) -> Format:
    """The format of an audio input (kind "audio", or "video" to read its sound), by content.

    Raises :class:`MediaError` for a missing file, an image and anything outside the allowlist.
    """
    p = require_file(path)
    fmt = _sniff(p)
    if fmt.kind == "image":
        raise MediaError(f"{p} has no audio track (it is a still image: {fmt.name}); give {AUDIO_FORMATS}")
    if fmt.kind not in ("audio", "video"):
        raise MediaError(f"{p} is not an audio file or video in a supported format (it is {fmt.name}); "
                         f"give {AUDIO_FORMATS}")
    return fmt


def open_input(path: PathLike, fmt: Format) -> av.container.InputContainer:
    """Open ``path`` with ``fmt``'s demuxer and nothing else (``fmt`` from :func:`face_format`
    or :func:`audio_format`).

    FFmpeg never probes: the demuxer is forced, only that demuxer may be instantiated (also by
    a nested open), only the ``file`` protocol may be used, and the mov demuxer does not follow
    the external data references ("drefs") an mp4/mov may name.
    """
    p = require_file(path)
    if fmt.demuxer is None:
        raise ValueError(f"{fmt.name} is not opened with FFmpeg")
    options = {"protocol_whitelist": "file", "format_whitelist": fmt.demuxer}
    if fmt.demuxer == "mov":
        options["enable_drefs"] = "0"  # the default today; a reference could name any local file
    try:
        # absolute, so a name such as "concat:a|b" or "pipe:0" cannot select another protocol
        return av.open(str(p.absolute()), "r", format=fmt.demuxer, container_options=options)
    except av.FFmpegError as e:
        raise MediaError(f"{p} is a damaged or incomplete {fmt.name} file (FFmpeg cannot read it: "
                         f"{describe_error(e)}); re-encode it or give another file") from e


def _sniff(p: Path) -> Format:
    try:
        return sniff_format(p)
    except OSError as e:
        raise MediaError(f"{p} cannot be read ({describe_error(e)}); check its permissions") from e


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
