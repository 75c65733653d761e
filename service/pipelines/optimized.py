"""The optimized pipeline: preloaded models, per-input caches, streamed lip-sync.

download (skipped on a cache hit) → TTS (audio cache) → FreeVC into the user's voice
(speaker embedding cached per input video) → Wav2Lip with decode, inference and encode
overlapped (face boxes cached per input video) → upload.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..bundle import ModelBundle
from ..lipsync.boxes import make_box_planner
from ..lipsync.engine import BoxPlan, SyncOptions, default_batch_size, sync_lips
from ..lipsync.face_memo import FACE_FEATURES_PER_FRAME, FaceFeatureMemo
from ..lipsync.frame_memo import FrameMemo, MemoryBudget
from ..media import MediaInfo, iter_frames, probe, read_audio
from ..media.writer import DEFAULT_PRESET
from ..storage import Storage
from ..timing import StageTimer
from ..tts import TextToSpeech
from ..types import Audio
from ..voice import VoiceConverter
from .artefacts import ArtefactStore
from .base import LipVideoJob, LipVideoResult
from .checks import check_input
from .common import ProgressReport, StepClock, StopCheck, in_callers_terms, request_dir, upload_result
from .input_cache import InputCache, InputEntry

log = logging.getLogger(__name__)


class OptimizedPipeline:
    name = "optimized"

    def __init__(self, bundle: ModelBundle, storage: Storage, tts: TextToSpeech, voice: VoiceConverter,
                 work_dir: Path, weights_dir: Path, resize_factor: int = 3, strategy: str = "static",
                 batch_size: int = 0, preset: str = DEFAULT_PRESET, input_cache_entries: int = 16,
                 frame_cache_bytes: int = 1024 * 1024 * 1024, artefacts: ArtefactStore | None = None) -> None:
        self.bundle, self.storage, self.tts, self.voice = bundle, storage, tts, voice
        self.work_dir = work_dir
        self.inputs = InputCache(work_dir / "inputs", input_cache_entries)
        self.artefacts = artefacts
        self.frame_budget = MemoryBudget(frame_cache_bytes)
        self.resize_factor, self.strategy, self.preset = resize_factor, strategy, preset
        self.batch_size = batch_size or default_batch_size(bundle.device.type)
        self._detect = make_box_planner(weights_dir, bundle.device.type)

    def run(self, job: LipVideoJob, should_stop: StopCheck | None = None,
            progress: ProgressReport | None = None) -> LipVideoResult:
        clock = StepClock(cuda=self.bundle.device.type == "cuda", should_stop=should_stop, progress=progress)
        hits = {"tts": False, "speaker_embedding": False, "face_boxes": False, "frames": False}
        with request_dir(self.work_dir, job.request_id) as tmp:
            with clock.step("download"):
                entry, media = self._input(job.input_uri)
                check_input(job, media, job.resize_factor or self.resize_factor)
            with clock.step("tts"):
                speech, hits["tts"] = self._speech(job)
            with clock.step("voice_conversion"), in_callers_terms(entry.video, job.input_uri):
                if entry.reference is None:
                    entry.reference = read_audio(entry.video, 16000)
                if entry.embedding is None and self.artefacts is not None:
                    entry.embedding = self.artefacts.embedding(entry.key)  # another process made it
                    hits["speaker_embedding"] = entry.embedding is not None
                elif entry.embedding is not None:
                    hits["speaker_embedding"] = True
                if entry.embedding is None:
                    entry.embedding, _ = self.voice.speaker_embedding(entry.reference)
                    if self.artefacts is not None:
                        self.artefacts.put_embedding(entry.key, entry.embedding)
                voiced = self.voice.convert_with_embedding(speech, entry.embedding)
            opts = SyncOptions(strategy=self.strategy, box=job.face_box,  # type: ignore[arg-type]
                               resize_factor=job.resize_factor or self.resize_factor,
                               batch_size=self.batch_size, preset=self.preset)
            memo = self._frames(entry, opts.resize_factor)
            planner, hits["face_boxes"] = self._planner(entry, opts, memo)
            self._make_room(entry, memo, opts.resize_factor)
            hits["frames"] = len(memo) > 0
            out = tmp / "output.mp4"
            timer = StageTimer(sync_cuda=False)
            with clock.step("lipsync"), in_callers_terms(entry.video, job.input_uri):
                result = sync_lips(entry.video, voiced, out, self.bundle.wav2lip, opts, planner, timer=timer,
                                   open_frames=memo.open, face_memo=self._faces(entry, opts.resize_factor),
                                   progress=clock.frames_done, info=media, bases=memo)
            return upload_result(self.name, job, result, out, self.storage, clock, hits, entry.size)

    def _speech(self, job: LipVideoJob) -> tuple[Audio, bool]:
        """TTS audio: this process's cache, then the shared store, then the engine."""
        engine = (job.tts_engine or self.tts.default_engine).lower()
        text_key = f"{engine}|{job.lang}|{job.text}"
        if self.artefacts is not None:
            shared = self.artefacts.speech(text_key)
            if shared is not None:
                return shared, True
        speech, hit = self.tts.synthesize_speech(job.text, job.lang, engine=job.tts_engine)
        if self.artefacts is not None and not hit:
            self.artefacts.put_speech(text_key, speech)
        return speech, hit

    def _input(self, uri: str) -> tuple[InputEntry, MediaInfo]:
        """The input's cache entry (downloaded and probed once per generation) and its probe."""
        info = self.storage.stat(uri)
        key = InputCache.key(uri, info.generation)
        entry = self.inputs.get(key)
        if entry is not None and entry.video.exists() and entry.media is not None:
            return entry, entry.media
        folder = self.inputs.folder_for(key)
        try:
            # no extension from the caller's name: what the file is gets decided by its content
            video = self.storage.download(uri, folder, info=info, filename="input")
            with in_callers_terms(video, uri):
                media = probe(video)  # a non-video object fails here, before any model work
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        entry = InputEntry(key, video, info.size, media.frame_count, media.width, media.height, media=media)
        self.inputs.put(entry)
        return entry, media

    def _frames(self, entry: InputEntry, resize_factor: int) -> FrameMemo:
        memo = entry.frames.get(resize_factor)
        if memo is None:
            video = entry.video

            def decode(start: int):  # noqa: ANN202 - a frame iterator
                return iter_frames(video, resize_factor=resize_factor, start=start)

            memo = entry.frames[resize_factor] = FrameMemo(decode, self.frame_budget)
        return memo

    def _make_room(self, entry: InputEntry, memo: FrameMemo, resize_factor: int) -> None:
        """Free other inputs' memory if this input's frames and features would not fit."""
        if memo.complete or self.frame_budget.limit == 0:
            return
        w, h = entry.width // resize_factor, entry.height // resize_factor
        param = next(self.bundle.wav2lip.parameters())
        # the decoded frame, its yuv420p conversion for the encoder, and its face features
        per_frame = w * h * 3 + w * h * 3 // 2 + FACE_FEATURES_PER_FRAME * param.element_size()
        self.inputs.free_memory(self.frame_budget, (entry.frame_count - len(memo)) * per_frame, keep=entry)

    def _faces(self, entry: InputEntry, resize_factor: int) -> FaceFeatureMemo | None:
        if not hasattr(self.bundle.wav2lip, "encode_faces"):
            return None
        return entry.faces.setdefault(resize_factor, FaceFeatureMemo(self.frame_budget))

    def _planner(self, entry: InputEntry, opts: SyncOptions, memo: FrameMemo):  # noqa: ANN202 - a BoxPlanner
        if opts.box is not None:
            return self._detect, False
        key = (opts.resize_factor, opts.strategy, opts.detector, opts.pads, opts.smooth, opts.keyframe_interval)
        cached = entry.boxes.get(key)
        if cached is None and self.artefacts is not None:
            cached = self.artefacts.boxes(entry.key, key)  # detected by another process
            if cached is not None:
                entry.boxes[key] = cached
        if cached is not None:
            return (lambda *_: cached), True

        def plan(face, info, n_out, o, timer):  # noqa: ANN001, ANN202
            # detection reads the frames through the memo: the render then replays them
            result = self._detect(face, info, n_out, o, timer, resized=memo.open)
            entry.boxes[key] = BoxPlan(list(result.boxes), result.report)
            if self.artefacts is not None:
                self.artefacts.put_boxes(entry.key, key, entry.boxes[key])
            return result

        return plan, False
