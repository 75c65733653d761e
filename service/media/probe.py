"""``probe``: what a face input is (video or still image), its size after rotation, rate and length."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.container
import av.video.stream

from service.errors import MediaError

from .containers import PathLike, describe_error, face_format, open_input
from .images import read_image
from .orientation import stream_rotation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found.

    ``width``/``height`` are pixels *after* display rotation (what :func:`iter_frames` yields).
    ``frame_count`` comes from the container's frame count, or duration x fps when the container
    does not store one (WebM, some MKV): an estimate that can be off by a frame or two, so
    streaming code must stop when the frames end, not after ``frame_count`` frames.
    ``rotation`` is clockwise degrees (0/90/180/270) applied for display, like the legacy
    ``rotate`` tag (ffprobe's display-matrix ``rotation`` is the counter-clockwise ``-rotation``).
    Still images have ``fps``, ``frame_rate`` and ``duration_s`` None and ``frame_count`` 1.
    """

    path: str
    kind: Literal["video", "image"]
    width: int
    height: int
    fps: float | None
    frame_rate: Fraction | None
    """The exact rate (30000/1001 for "29.97"); pass it to :class:`VideoWriter` as is."""
    frame_count: int
    duration_s: float | None
    rotation: int
    has_audio: bool
    audio_sample_rate: int | None
    video_codec: str | None
    audio_codec: str | None


def probe(path: PathLike) -> MediaInfo:
    """Describe a face input: an mp4/mov, webm/mkv or avi video, or a jpeg/png/bmp/webp image,
    recognised by content (a file's name is never trusted).

    Decodes the first video frame, so a file that opens but has no decodable picture fails here
    rather than half-way through a job. Raises :class:`MediaError` for a missing file, a file
    that is not a video or image, and a file with no video stream or no frames.
    """
    p = Path(path)
    fmt = face_format(p)
    if fmt.kind == "image":
        image = read_image(p)
        return MediaInfo(path=str(p), kind="image", width=image.shape[1], height=image.shape[0],
                         fps=None, frame_rate=None, frame_count=1, duration_s=None, rotation=0,
                         has_audio=False, audio_sample_rate=None, video_codec=None, audio_codec=None)
    with open_input(p, fmt) as container:
        stream = video_stream(container, p)
        first = first_frame(container, stream, p)
        rotation = stream_rotation(first, stream)
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise MediaError(f"{p} has no frame rate; re-encode it at a constant frame rate")
        rate = Fraction(rate)
        duration = _duration_s(container, stream)
        frame_count = stream.frames or (round(duration * rate) if duration else 1)
        audio = container.streams.audio[0] if container.streams.audio else None
        info = MediaInfo(
            path=str(p), kind="video", width=width, height=height, fps=float(rate), frame_rate=rate,
            frame_count=int(frame_count), duration_s=duration if duration else frame_count / float(rate),
            rotation=rotation, has_audio=audio is not None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            video_codec=stream.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None)
    log.debug("probed %s", info)
    return info


def video_stream(container: av.container.InputContainer, path: PathLike) -> av.video.stream.VideoStream:
    """The first video stream, or :class:`MediaError` ("has no frames") for an audio-only file."""
    if not container.streams.video:
        raise MediaError(f"{path} has no frames (no video stream: audio only?); "
                         "give a video with a picture, or an image")
    return container.streams.video[0]


def first_frame(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                path: PathLike) -> av.VideoFrame:
    """Decode the first frame; :class:`MediaError` when there is none or it cannot be decoded."""
    try:
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError as e:
        raise MediaError(f"{path} has no frames that can be decoded ({describe_error(e)}); "
                         "re-encode it or give another video") from e
    raise MediaError(f"{path} has no frames; give a video with at least one frame")


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None
