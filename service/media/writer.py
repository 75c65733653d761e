"""``VideoWriter``: streaming H.264 + AAC mp4 output that appears atomically or not at all."""
from __future__ import annotations

import logging
import os
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Self, cast

import av
import av.container
import av.video.plane
import av.video.stream
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from service.errors import MediaError
from service.types import Audio

from .containers import PathLike, as_frame_rate, describe_error
from .encoders import choose_encoder, encoder_options

log = logging.getLogger(__name__)

DEFAULT_PRESET = "veryfast"  # x264: the speed/size balance every caller starts from (setting X264_PRESET)

AUDIO_RATE = 48000  # AAC at 48 kHz plays everywhere; 16/24 kHz AAC is legal but less supported
AUDIO_BIT_RATE = 96_000  # mono speech
AUDIO_LEAD_S = 0.5  # audio is encoded this far ahead of the video so the two interleave in mdat
# swscale's default BGR->yuv420p (what the ffmpeg CLI does) truncates: every plane comes out
# 0.5 level low on average, invisible. Accurate rounding with area (2x2 mean) chroma gives the
# exact BT.601 values but costs ~2 ms more per 1080p frame (libx264 ultrafast on 2 cores:
# 86 -> 74 fps), so it is an option.
_TO_YUV_FAST = Interpolation.BILINEAR
_TO_YUV_EXACT = Interpolation.AREA | Interpolation.ACCURATE_RND
MUXER_OPTIONS = {
    "movflags": "+faststart",
    # edit lists are in the movie time scale; the default (1000) cuts the audio's end to the ms
    "movie_timescale": str(AUDIO_RATE),
}


@dataclass(frozen=True)
class YuvImage:
    """A frame in a writer's yuv420p: Y [H, W], U and V [H/2, W/2] (uint8, even H and W)."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.y.nbytes + self.u.nbytes + self.v.nbytes


def _plane_view(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A writable [height, width] view of a frame plane (rows padded to ``line_size``)."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]


def ensure_writable(path: PathLike) -> Path:
    """Check, before any work, that ``path`` can be created; :class:`MediaError` if not."""
    p = Path(path)
    folder = p.parent
    if p.is_dir():
        raise MediaError(f"output path {p} is not writable: it is a folder; give a file name ending in .mp4")
    if not folder.is_dir():
        raise MediaError(f"output path {p} is not writable: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MediaError(f"output path {p} is not writable: no permission to create files in {folder}")
    return p


class VideoWriter:
    """Encode BGR frames to an H.264 (yuv420p) mp4 with optional AAC audio, streaming.

    Usage::

        with VideoWriter(out, width, height, info.frame_rate, audio=speech) as writer:
            for frame in frames:
                writer.write(frame)          # BGR uint8 [height, width, 3], or a batch of them

    Output goes to a hidden temporary file next to ``path`` and is renamed onto ``path`` only
    when the ``with`` block ends without an exception (or :meth:`close` is called); an exception,
    :meth:`abort`, or dropping the writer unclosed deletes it, so a partial mp4 never appears.

    - Frame rate: exactly ``fps`` (constant; 29.97 means 30000/1001), time base 1/fps, frame i
      at pts i. The video has exactly the frames written.
    - Odd sizes: yuv420p needs even dimensions, so an odd ``width``/``height`` loses its last
      column/row (cropped, not scaled or padded: no resampling blur, no invented pixels).
    - Colour: BGR -> yuv420p with swscale's BT.601 limited-range matrix, tagged as such (the
      matrix :func:`iter_frames` decodes with). By default swscale's fast path, as the ffmpeg
      CLI: values up to 1 level low (0.5 on average); ``exact_colour=True`` rounds exactly
      (within 0.55 level, 2x2-mean chroma) for ~2 ms more per 1080p frame.
    - Audio: ``audio`` (any rate, mono) is resampled to 48 kHz and encoded as AAC-LC, 96 kb/s,
      interleaved with the video as frames arrive and flushed in full on close, so the output
      covers the whole audio even when it is longer than the video.
    - ``codec``: "auto" (NVENC when it opens, else libx264), "h264_nvenc" or "libx264";
      ``preset`` and ``crf`` use x264's names and scale (mapped for NVENC); ``threads`` 0 = auto.
    - ``movflags=+faststart``: the index (moov) precedes the media data, for progressive playback.
    """

    def __init__(self, path: PathLike, width: int, height: int, fps: float | Fraction,
                 audio: Audio | None = None, codec: str = "auto", preset: str = DEFAULT_PRESET,
                 crf: int = 20, threads: int = 0, exact_colour: bool = False) -> None:
        if width < 2 or height < 2:
            raise ValueError(f"frame size must be at least 2x2, got {width}x{height}")
        self.path = ensure_writable(path)
        self.width, self.height = int(width), int(height)
        self.rate = as_frame_rate(fps)
        self.encoder = choose_encoder(codec)
        options = encoder_options(self.encoder, preset, crf)
        self.frames_written = 0
        self._to_yuv = _TO_YUV_EXACT if exact_colour else _TO_YUV_FAST
        self._even = (self.width - self.width % 2, self.height - self.height % 2)
        if self._even != (self.width, self.height):
            log.info("%dx%d is odd; encoding %dx%d (last column/row cropped)",
                     self.width, self.height, *self._even)
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.part")
        try:
            # the temp name has no .mp4 suffix, so the muxer is named explicitly
            self._container = av.open(str(self._tmp), "w", format="mp4", options=MUXER_OPTIONS)
        except av.FFmpegError as e:
            raise MediaError(f"output path {self.path} is not writable: {describe_error(e)}") from e
        # deletes the temp file if the writer is garbage-collected without close()/abort()
        self._finalizer = weakref.finalize(self, _discard, self._container, self._tmp)
        try:
            self._video = self._add_video(options, threads)
            self._audio = _AudioTrack(self._container, audio) if audio is not None else None
        except BaseException:
            self.abort()
            raise
        log.debug("writing %s via %s: %dx%d @ %s fps, %s %s, audio %s", self.path, self._tmp.name,
                  *self._even, self.rate, self.encoder, options,
                  f"{audio.duration_s:.2f} s" if audio is not None else "none")

    def _add_video(self, options: dict[str, str], threads: int) -> av.video.stream.VideoStream:
        stream = cast(av.video.stream.VideoStream,
                      self._container.add_stream(self.encoder, rate=self.rate, options=options))
        stream.width, stream.height = self._even
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / self.rate
        ctx = stream.codec_context
        ctx.time_base = 1 / self.rate
        ctx.thread_count = threads
        ctx.colorspace = Colorspace.ITU601
        ctx.color_range = ColorRange.MPEG
        return stream

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def write(self, frames: np.ndarray | Iterable[np.ndarray]) -> None:
        """Append a frame (BGR uint8 [height, width, 3]) or a batch ([B, H, W, 3] or a list)."""
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = (frames,)
        for image in frames:
            self._write_one(image)

    @property
    def colour_key(self) -> tuple[int, int, int]:
        """What decides :meth:`to_yuv`'s output besides the pixels: size and conversion."""
        return (*self._even, int(self._to_yuv))

    def to_yuv(self, image: np.ndarray) -> YuvImage:
        """``image`` (BGR uint8 [height, width, 3]) converted as :meth:`write` converts it."""
        frame = self._convert(self._checked(image))
        return YuvImage(*(_plane_view(p).copy() for p in frame.planes))

    def write_over(self, base: YuvImage, patch: np.ndarray, top: int, left: int) -> None:
        """Append the frame ``base`` (from :meth:`to_yuv`) with the BGR ``patch`` written at
        (``top``, ``left``): the same frame as :meth:`write` of the composited BGR image, bit
        for bit, while converting only the patch. swscale converts each 2x2 block on its own
        (tests/test_media.py checks it), so the patch needs even offsets and size."""
        ph, pw = patch.shape[:2]
        w, h = self._even
        if (top | left | ph | pw) % 2 or top < 0 or left < 0 or top + ph > h or left + pw > w \
                or patch.dtype != np.uint8 or patch.ndim != 3 or patch.shape[2] != 3:
            raise ValueError(f"patch must be BGR uint8 with even size and offsets inside {w}x{h}, "
                             f"got {patch.dtype} {list(patch.shape)} at ({top}, {left})")
        if base.y.shape != (h, w):
            raise ValueError(f"base frame is {base.y.shape[1]}x{base.y.shape[0]}, the video {w}x{h}")
        frame = av.VideoFrame(w, h, "yuv420p")
        small = self._convert(patch)
        for k, (plane, full, part) in enumerate(zip(frame.planes, (base.y, base.u, base.v), small.planes,
                                                    strict=True)):
            dst = _plane_view(plane)
            dst[...] = full
            s = 1 if k == 0 else 2
            dst[top // s:top // s + part.height, left // s:left // s + part.width] = _plane_view(part)
        self._encode(frame)

    def _checked(self, image: np.ndarray) -> np.ndarray:
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(f"expected BGR uint8 [{self.height}, {self.width}, 3], "
                             f"got {image.dtype} {list(image.shape)}")
        w, h = self._even
        return image[:h, :w] if (w, h) != (self.width, self.height) else image

    def _convert(self, image: np.ndarray) -> av.VideoFrame:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        return frame.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU601,
                              dst_color_range=ColorRange.MPEG, interpolation=self._to_yuv)

    def _write_one(self, image: np.ndarray) -> None:
        self._encode(self._convert(self._checked(image)))

    def _encode(self, frame: av.VideoFrame) -> None:
        if self.closed:
            raise ValueError(f"VideoWriter for {self.path} is closed")
        frame.pts = self.frames_written
        frame.time_base = self._video.codec_context.time_base
        self._mux(self._video.encode(frame))
        self.frames_written += 1
        if self._audio is not None:
            self._audio.encode_until(float(self.frames_written / self.rate) + AUDIO_LEAD_S)

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoders, finish the mp4 and move it onto ``path``. Idempotent."""
        if self.closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"no frames were written to {self.path}; nothing saved")
        try:
            self._mux(self._video.encode(None))
            if self._audio is not None:
                self._audio.finish()
            self._container.close()  # writes moov, then the faststart pass moves it to the front
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._finalizer.detach()
        log.info("wrote %s: %d frames at %s fps (%.2f s)%s", self.path, self.frames_written, self.rate,
                 float(self.frames_written / self.rate),
                 f", audio {self._audio.duration_s:.2f} s" if self._audio is not None else "")

    def abort(self) -> None:
        """Stop and delete the temporary file; ``path`` is left untouched. Idempotent."""
        if self._finalizer.alive:
            self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _discard(container: av.container.OutputContainer, tmp: Path) -> None:
    try:
        container.close()
    except (av.FFmpegError, OSError, ValueError) as e:  # the file is being thrown away anyway
        log.debug("closing aborted %s: %s", tmp, e)
    tmp.unlink(missing_ok=True)
    log.debug("discarded %s", tmp)


class _AudioTrack:
    """AAC audio fed from an in-memory :class:`Audio` in step with the video's clock."""

    def __init__(self, container: av.container.OutputContainer, audio: Audio) -> None:
        if audio.samples.size == 0:
            raise ValueError("audio for the output video is empty")
        self._container = container
        self._samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
        self._rate = audio.sample_rate
        self._pos = 0
        self.duration_s = audio.duration_s
        self._stream = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        self._stream.bit_rate = AUDIO_BIT_RATE
        # the codec context resamples to 48 kHz fltp in 1024-sample frames itself

    def encode_until(self, t_s: float) -> None:
        """Encode the audio up to ``t_s`` seconds (or its end)."""
        self._encode_to(min(self._samples.shape[0], round(t_s * self._rate)))

    def _encode_to(self, end: int) -> None:
        if end <= self._pos:
            return
        chunk = self._samples[self._pos:end]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._pos
        frame.time_base = Fraction(1, self._rate)
        self._pos = end
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def finish(self) -> None:
        """Encode what is left and flush the resampler and encoder."""
        self._encode_to(self._samples.shape[0])
        for packet in self._stream.encode(None):
            self._container.mux(packet)
