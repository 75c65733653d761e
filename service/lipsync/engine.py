"""The lip-sync engine: a face video (or image) plus 16 kHz speech in, composited frames out.

Three stages overlap: a decode thread streams input frames into a bounded queue, the
calling thread crops, runs Wav2Lip in batches and pastes, and (in :func:`sync_lips`) an
encode thread writes the mp4. Memory stays bounded by the queue sizes and one batch,
whatever the video's length.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch

from ..errors import BadInputError
from ..media import MediaInfo, VideoWriter, iter_frames, probe
from ..media.writer import DEFAULT_PRESET, YuvImage
from ..timing import StageTimer
from ..types import Audio, FaceBox
from .face_memo import FaceFeatureMemo
from .faces import crop_faces, model_input, paste_faces
from .frames import LoopMode, stream_output_frames
from .mel import SAMPLE_RATE, mel_windows, output_frame_count, wav2lip_mel, window_starts

if TYPE_CHECKING:
    from ..face import FaceDetection

log = logging.getLogger(__name__)

Strategy = Literal["per-frame", "static", "keyframe"]
OFFICIAL_BATCH = 128  # official inference.py --wav2lip_batch_size; what a GPU runs
CPU_BATCH = 16  # measured fastest on CPUs (bench/RESULTS.md): bigger batches only add latency


def default_batch_size(device_type: str) -> int:
    """The Wav2Lip batch when none is asked for: the official 128 on a GPU, 16 on a CPU."""
    return OFFICIAL_BATCH if device_type == "cuda" else CPU_BATCH
STAGES = ("decode", "detect", "mel", "infer", "paste", "encode")


@dataclass(frozen=True)
class SyncOptions:
    """How to lip-sync. Defaults are the optimized engine; ``official()`` gives the original."""

    strategy: Strategy = "static"
    detector: str = "auto"
    keyframe_interval: int = 10
    pads: tuple[int, int, int, int] = (0, 10, 0, 0)
    smooth: bool = True
    box: tuple[int, int, int, int] | None = None
    """(top, bottom, left, right): skip detection and use this box for every frame."""
    resize_factor: int = 1
    batch_size: int = 16
    loop_mode: LoopMode = "loop"
    round_paste: bool = False
    blend: float = 0.0
    image_fps: float = 25.0
    max_pixels: int = 3840 * 2160
    """Largest frame (after resize_factor) accepted; bigger inputs are refused, not slowly run."""
    codec: str = "auto"
    preset: str = DEFAULT_PRESET
    crf: int = 20

    @classmethod
    def official(cls, **overrides: object) -> SyncOptions:
        """The official ``inference.py`` behaviour: per-frame detection, batch 128."""
        return cls(**{"strategy": "per-frame", "batch_size": OFFICIAL_BATCH, **overrides})  # type: ignore[arg-type]


@dataclass
class SyncResult:
    out_path: Path | None
    frames: int
    fps: float
    width: int
    height: int
    audio_s: float
    seconds: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    boxes: list[FaceBox] = field(default_factory=list)
    """Distinct face boxes used (one for static or --box); for caching and reports."""
    face_detection: FaceDetection | None = None
    """What face detection found (the plan's report)."""


FrameSource = Callable[[], Iterator[np.ndarray]]
"""Starts a fresh pass over the input's frames (BGR uint8, after ``resize_factor``)."""
BoxPlanner = Callable[[Path, MediaInfo, int, SyncOptions, StageTimer], "BoxPlan"]


class BaseFrames(Protocol):
    """Source frames converted for the encoder, by source index (:class:`FrameMemo`)."""

    def converted(self, index: int, key: Hashable,
                  convert: Callable[[np.ndarray], YuvImage]) -> YuvImage | None: ...


@dataclass(frozen=True)
class BoxPlan:
    """Face box per source frame index; a single box means "the same for every frame"."""

    boxes: Sequence[FaceBox]
    report: FaceDetection | None = None
    """What detection found, or ``FaceDetection("none", 0, 0, box)`` for a given box."""

    def box(self, source_index: int) -> FaceBox:
        if len(self.boxes) == 1:
            return self.boxes[0]
        return self.boxes[min(source_index, len(self.boxes) - 1)]


class _Prepared:
    """Everything known before the first frame is composited."""

    def __init__(self, face: Path, audio: Audio, opts: SyncOptions, timer: StageTimer,
                 plan_boxes: BoxPlanner, info: MediaInfo | None = None) -> None:
        audio.expect_rate(SAMPLE_RATE, "Wav2Lip")
        if audio.samples.size == 0:
            raise BadInputError("the speech audio is empty (0 samples)")
        self.info = info or probe(face)
        self.fps = float(self.info.fps) if self.info.fps else float(opts.image_fps)
        self.rate: Fraction | float = self.info.frame_rate or Fraction(opts.image_fps).limit_denominator(1001)
        rf = opts.resize_factor
        self.width, self.height = self.info.width // rf, self.info.height // rf
        if self.width * self.height > opts.max_pixels:
            raise BadInputError(
                f"{face}: frames are {self.width}x{self.height} after --resize-factor {rf}, over the "
                f"limit of {opts.max_pixels:,} pixels; pass --resize-factor {rf + 1} or more")
        with timer.stage("mel"):
            self.mel = wav2lip_mel(audio.samples)
            self.n_out = output_frame_count(audio.samples.size, self.fps)
            try:
                self.starts = window_starts(self.n_out, self.fps, self.mel.shape[1])
            except ValueError as e:
                raise BadInputError(f"the speech audio is too short ({audio.duration_s:.2f} s): {e}") from e
        self.plan = plan_boxes(face, self.info, self.n_out, opts, timer)


def composite_frames(face: Path, audio: Audio, model: torch.nn.Module, opts: SyncOptions,
                     plan_boxes: BoxPlanner, timer: StageTimer | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     prepared: _Prepared | None = None,
                     open_frames: FrameSource | None = None,
                     face_memo: FaceFeatureMemo | None = None) -> Iterator[np.ndarray]:
    """Yield the lip-synced frames (BGR uint8, before any encoding), one per output frame.

    Output covers the whole audio: ceil(duration · fps) frames. ``progress`` is called with
    the frames done and the total after each batch. ``open_frames`` replaces decoding
    ``face`` (e.g. :meth:`FrameMemo.open`): it must yield the same frames, already resized.
    ``face_memo`` keeps and reuses the face encoder's outputs per (source frame, box); it
    needs a model with ``encode_faces``/``decode`` (:class:`models.wav2lip.Wav2Lip`).
    """
    for frame, _, _ in _composite(face, audio, model, opts, plan_boxes, timer, progress, prepared,
                                  open_frames, face_memo):
        yield frame


def _composite(face: Path, audio: Audio, model: torch.nn.Module, opts: SyncOptions,
               plan_boxes: BoxPlanner, timer: StageTimer | None,
               progress: Callable[[int, int], None] | None, prepared: _Prepared | None,
               open_frames: FrameSource | None,
               face_memo: FaceFeatureMemo | None) -> Iterator[tuple[np.ndarray, int, FaceBox]]:
    """:func:`composite_frames`, each frame with its source frame index and face box."""
    timer = timer or StageTimer()
    prep = prepared or _Prepared(face, audio, opts, timer, plan_boxes)
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    frames_q: queue.Queue[tuple[int, int, np.ndarray] | BaseException | None] = \
        queue.Queue(maxsize=max(2, 2 * opts.batch_size))
    stop = threading.Event()

    def decode() -> None:
        try:
            it = stream_output_frames(
                open_frames or (lambda: iter_frames(face, resize_factor=opts.resize_factor)), prep.n_out,
                opts.loop_mode, expect_short=prep.info.frame_count < prep.n_out)
            while True:
                t0 = time.perf_counter()
                item = next(it, None)
                timer.add("decode", time.perf_counter() - t0)
                if item is None or stop.is_set():
                    break
                frames_q.put(item)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            frames_q.put(e)
            return
        frames_q.put(None)

    worker = threading.Thread(target=decode, name="lipsync-decode", daemon=True)
    worker.start()
    done = 0
    try:
        while done < prep.n_out:
            batch = _take_batch(frames_q, opts.batch_size)
            if not batch:
                break
            idx = np.array([i for i, _, _ in batch])
            frames = [f for _, _, f in batch]
            boxes = [prep.plan.box(s) for _, s, _ in batch]
            keys = [(s, box) for (_, s, _), box in zip(batch, boxes, strict=True)]
            skips = face_memo.lookup(keys) if face_memo is not None else None
            with timer.stage("paste"):
                faces = None if skips is not None else model_input(crop_faces(frames, boxes), device, dtype)
            mel = torch.from_numpy(mel_windows(prep.mel, prep.starts[idx])).to(device, dtype)
            with timer.stage("infer"), torch.inference_mode():
                if face_memo is None:
                    generated = model(mel, faces)
                else:
                    if skips is None:
                        skips = model.encode_faces(faces)
                        face_memo.store(keys, skips)
                    generated = model.decode(mel, skips)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            with timer.stage("paste"):
                paste_faces(frames, boxes, generated, round_paste=opts.round_paste, blend=opts.blend)
            yield from zip(frames, (s for _, s, _ in batch), boxes, strict=True)
            done += len(frames)
            if progress:
                progress(done, prep.n_out)
        if done != prep.n_out:
            raise RuntimeError(f"produced {done} of {prep.n_out} frames")
    finally:
        stop.set()
        while worker.is_alive():  # unblock a decoder waiting on a full queue
            try:
                frames_q.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


def sync_lips(face: Path, audio: Audio, out_path: Path, model: torch.nn.Module, opts: SyncOptions,
              plan_boxes: BoxPlanner, progress: Callable[[int, int], None] | None = None,
              timer: StageTimer | None = None, open_frames: FrameSource | None = None,
              face_memo: FaceFeatureMemo | None = None, info: MediaInfo | None = None,
              bases: BaseFrames | None = None) -> SyncResult:
    """Lip-sync ``face`` to ``audio`` and write an H.264/AAC mp4 to ``out_path``.

    ``info``: ``face``'s probe when the caller has it (a service's input cache): opening the
    container again costs ~30 ms per request for a 1080p mp4. ``bases``: the input frames
    already converted for the encoder (:meth:`FrameMemo.converted`); a frame found there is
    encoded by converting only its face box (~1 ms less per 640x360 frame, same output).

    Nothing is left at ``out_path`` unless the whole video was written.
    """
    timer = timer or StageTimer(sync_cuda=False)
    prep = _Prepared(face, audio, opts, timer, plan_boxes, info)
    out_q: queue.Queue[tuple[np.ndarray, int, FaceBox] | None] = queue.Queue(maxsize=max(4, opts.batch_size))
    errors: list[BaseException] = []
    writer = VideoWriter(out_path, prep.width, prep.height, prep.rate, audio=audio,
                         codec=opts.codec, preset=opts.preset, crf=opts.crf)

    def encode() -> None:
        try:
            while (item := out_q.get()) is not None:
                with timer.stage("encode"):
                    _encode_frame(writer, *item, bases)
        except BaseException as e:  # noqa: BLE001 - re-raised by the caller
            errors.append(e)
            while out_q.get() is not None:  # drain so the producer never blocks
                pass

    enc = threading.Thread(target=encode, name="lipsync-encode", daemon=True)
    enc.start()
    try:
        for item in _composite(face, audio, model, opts, plan_boxes, timer, progress, prep,
                               open_frames, face_memo):
            if errors:
                break
            out_q.put(item)
        out_q.put(None)
        enc.join()
        if errors:
            raise errors[0]
        with timer.stage("encode"):
            writer.close()
    except BaseException:
        if enc.is_alive():
            out_q.put(None)
            enc.join()
        writer.abort()
        raise
    return SyncResult(out_path, prep.n_out, prep.fps, prep.width, prep.height, audio.duration_s,
                      timer.seconds(), timer.elapsed(), list(dict.fromkeys(prep.plan.boxes)), prep.plan.report)


def _encode_frame(writer: VideoWriter, frame: np.ndarray, source: int, box: FaceBox,
                  bases: BaseFrames | None) -> None:
    """Encode ``frame``; from ``bases``' conversion of its source frame plus its face box (rounded
    out to even bounds) when there is one: only the box changed since the source frame."""
    base = bases.converted(source, writer.colour_key, writer.to_yuv) if bases is not None else None
    if base is None:
        writer.write(frame)
        return
    height, width = base.y.shape
    top, left = max(0, box.top) & ~1, max(0, box.left) & ~1
    bottom, right = min(height, box.bottom + (box.bottom & 1)), min(width, box.right + (box.right & 1))
    if bottom <= top or right <= left:
        writer.write(frame)
        return
    writer.write_over(base, frame[top:bottom, left:right], top, left)


def _take_batch(q: queue.Queue[tuple[int, int, np.ndarray] | BaseException | None],
                size: int) -> list[tuple[int, int, np.ndarray]]:
    batch: list[tuple[int, int, np.ndarray]] = []
    while len(batch) < size:
        item = q.get()
        if item is None:
            q.put(None)  # keep the end marker for the next call
            break
        if isinstance(item, BaseException):
            raise item
        batch.append(item)
    return batch

