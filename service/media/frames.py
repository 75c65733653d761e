"""Streaming frame decode: BGR uint8 frames, rotated for display and downscaled like Wav2Lip."""
from __future__ import annotations

import logging
from collections.abc import Generator
from pathlib import Path

import av
import av.container
import av.video.stream
import cv2
import numpy as np

from service.errors import MediaError

from .containers import PathLike, describe_error, face_format, open_input
from .images import read_image
from .orientation import rotate_clockwise, stream_rotation
from .probe import video_stream

log = logging.getLogger(__name__)

Frames = Generator[np.ndarray, None, None]


def iter_frames(path: PathLike, resize_factor: int = 1, start: int = 0,
                stop: int | None = None) -> Frames:
    """Yield frames ``start`` .. ``stop - 1`` of a video (or the one frame of an image).

    Each frame is BGR uint8 [H, W, 3], C-contiguous, turned upright per the display rotation
    (as FFmpeg's autorotate), then, for ``resize_factor`` > 1, resized to
    ``(W // resize_factor, H // resize_factor)`` with ``cv2.resize``'s default bilinear filter,
    exactly as official Wav2Lip's ``--resize_factor``. Video frames come from
    ``frame.to_ndarray(format="bgr24")``, which matches ``cv2.VideoCapture`` bit for bit.

    Streaming: one decoded frame at a time, and decoding stops at ``stop``. Frames before
    ``start`` are decoded (exact for any stream, including variable frame rate) but never
    converted. The file is opened and checked now, so a bad file raises :class:`MediaError`
    here; a decode failure later raises it from the iteration. Close the iterator (or exhaust
    it) to release the file early.
    """
    if int(resize_factor) != resize_factor or resize_factor < 1:
        raise ValueError(f"resize_factor must be a positive integer, got {resize_factor!r}")
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
    p = Path(path)
    fmt = face_format(p)  # by content: a video, or an image decoded as one frame
    if fmt.kind == "image":
        return _iter_image(read_image(p), int(resize_factor), start, stop)
    container = open_input(p, fmt)
    try:
        stream = video_stream(container, p)
    except MediaError:
        container.close()
        raise
    return _iter_video(container, stream, p, int(resize_factor), start, stop)


def read_frame(path: PathLike, index: int, resize_factor: int = 1) -> np.ndarray:
    """Frame ``index`` (0-based) of a video, as :func:`iter_frames` would yield it.

    Raises ``IndexError`` when the video has fewer frames. Decodes from the start: for many
    frames, iterate instead.
    """
    frames = iter_frames(path, resize_factor=resize_factor, start=index, stop=index + 1)
    try:
        return next(frames)
    except StopIteration:
        raise IndexError(f"{path} has no frame {index}") from None
    finally:
        frames.close()


def _iter_image(image: np.ndarray, resize_factor: int, start: int, stop: int | None) -> Frames:
    if start == 0 and (stop is None or stop > 0):
        yield _downscale(image, resize_factor)


def _iter_video(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                path: PathLike, resize_factor: int, start: int, stop: int | None) -> Frames:
    with container:
        # frame + slice threads: 1080p H.264 decode is otherwise single-core and the slowest stage
        stream.thread_type = "AUTO"
        rotation: int | None = None
        index = 0
        try:
            for frame in container.decode(stream):
                if stop is not None and index >= stop:
                    break
                if rotation is None:
                    rotation = stream_rotation(frame, stream)
                if index >= start:
                    yield _to_bgr(frame, rotation, resize_factor)
                index += 1
                if stop is not None and index >= stop:
                    break  # do not decode the frame after the last one asked for
        except av.FFmpegError as e:
            raise MediaError(f"{path}: frame {index} cannot be decoded ({describe_error(e)}); "
                             "re-encode the video or give another one") from e
    if index == 0 and (stop is None or stop > 0):
        raise MediaError(f"{path} has no frames; give a video with at least one frame")
    log.debug("decoded %d frames of %s", index, path)


def _to_bgr(frame: av.VideoFrame, rotation: int, resize_factor: int) -> np.ndarray:
    # bgr24 through swscale's defaults is what cv2.VideoCapture gives (same FFmpeg path);
    # no explicit colour range/matrix, or the official reference frames would shift
    image = np.ascontiguousarray(frame.to_ndarray(format="bgr24"))
    return _downscale(rotate_clockwise(image, rotation), resize_factor)


def _downscale(image: np.ndarray, resize_factor: int) -> np.ndarray:
    if resize_factor == 1:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (w // resize_factor, h // resize_factor))
