"""The baseline pipeline: the customer's original cost structure, for honest comparisons.

As their scripts did: every request loads the models from disk, writes intermediate files
(downloaded video, reference wav, TTS wav, converted wav), detects the face on every frame
with the 5-frame smoothing, runs Wav2Lip at the official batch size (128) and
``resize_factor`` 1 unless the request says otherwise, and encodes with x264's default
preset. No caches. It produces the same kind of output as the optimized pipeline.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..bundle import load_bundle
from ..lipsync.boxes import make_box_planner
from ..lipsync.engine import SyncOptions, sync_lips
from ..media import probe, read_audio
from ..settings import model_dtype
from ..storage import Storage
from ..timing import StageTimer
from ..tts import TextToSpeech, write_wav
from ..voice import VoiceConverter
from .base import LipVideoJob, LipVideoResult
from .checks import check_input
from .common import ProgressReport, StepClock, StopCheck, in_callers_terms, request_dir, upload_result

log = logging.getLogger(__name__)


class BaselinePipeline:
    name = "baseline"

    def __init__(self, storage: Storage, tts: TextToSpeech, weights_dir: Path, device: torch.device,
                 freevc_config: str, work_dir: Path, half_precision: bool = True,
                 noise_scale: float = 0.0) -> None:
        self.storage, self.tts = storage, tts
        self.weights_dir, self.device, self.freevc_config = weights_dir, device, freevc_config
        self.work_dir, self.half, self.noise_scale = work_dir, half_precision, noise_scale

    def run(self, job: LipVideoJob, should_stop: StopCheck | None = None,
            progress: ProgressReport | None = None) -> LipVideoResult:
        clock = StepClock(cuda=self.device.type == "cuda", should_stop=should_stop, progress=progress)
        hits = {"tts": False, "speaker_embedding": False, "face_boxes": False, "frames": False}
        with request_dir(self.work_dir, job.request_id) as tmp:
            with clock.step("download"):
                info = self.storage.stat(job.input_uri)
                video = self.storage.download(job.input_uri, tmp, info=info, filename="input")
                with in_callers_terms(video, job.input_uri):
                    media = probe(video)
                check_input(job, media, job.resize_factor or 1)
            with clock.step("tts"):
                speech, _ = self.tts.synthesize_speech(job.text, job.lang, engine=job.tts_engine, use_cache=False)
                tts_wav = write_wav(tmp / "tts.wav", speech)
            with clock.step("voice_conversion"), in_callers_terms(video, job.input_uri):
                # models loaded for this request, as the original scripts did
                bundle = load_bundle(self.weights_dir, self.device, model_dtype(self.device, self.half),
                                     self.freevc_config, warm=False, only=("wavlm", "freevc", "speaker"))
                voice = VoiceConverter(bundle, noise_scale=self.noise_scale)  # fresh: nothing cached
                reference = write_wav(tmp / "reference.wav", read_audio(video, 16000))
                voiced = voice.convert_voice(read_audio(tts_wav, 16000), read_audio(reference, 16000))
                voiced_wav = write_wav(tmp / "converted.wav", voiced)
                del bundle, voice
            out = tmp / "output.mp4"
            with clock.step("lipsync"), in_callers_terms(video, job.input_uri):
                w2l = load_bundle(self.weights_dir, self.device, model_dtype(self.device, self.half),
                                  self.freevc_config, warm=False, only=("wav2lip",)).wav2lip
                opts = SyncOptions.official(box=job.face_box, resize_factor=job.resize_factor or 1,
                                            preset="medium")
                timer = StageTimer()
                result = sync_lips(video, read_audio(voiced_wav, 16000), out, w2l, opts,
                                   make_box_planner(self.weights_dir, self.device.type), timer=timer,
                                   progress=clock.frames_done)
            return upload_result(self.name, job, result, out, self.storage, clock, hits, info.size)
