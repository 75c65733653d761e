"""One process's service state: settings, storage, TTS, the preloaded bundle, the pipelines.

Built by the API's lifespan (or a test) from explicit settings; nothing here reads the
environment. ``preload()`` is idempotent and thread-safe.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .bundle import ModelBundle, load_bundle
from .concurrency import DeviceGate
from .errors import ServiceError
from .pipelines import LipVideoJob, LipVideoResult, Pipeline
from .settings import Settings, lipsync_dtype, resolve_device, voice_dtype
from .storage import Storage

if TYPE_CHECKING:
    from .tts import TextToSpeech

log = logging.getLogger(__name__)


class NotReadyError(ServiceError):
    code = "not_ready"
    retry_after_s = 10


class ServiceRuntime:
    def __init__(self, settings: Settings) -> None:
        from .tts import TextToSpeech

        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = voice_dtype(self.device, settings)  # WavLM and FreeVC; Wav2Lip has its own
        self.storage = Storage(emulator_host=settings.storage_emulator_host, project=settings.gcp_project,
                               local_root=settings.local_storage_root,
                               max_download_bytes=settings.max_download_bytes,
                               overwrite=settings.overwrite_output)
        self.tts: TextToSpeech = TextToSpeech.from_settings(settings)
        self.gate = DeviceGate(settings.max_waiting_requests)
        self.bundle: ModelBundle | None = None
        self._optimized: Pipeline | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._optimized is not None

    def preload(self) -> ModelBundle:
        """Load and warm the bundle once (later calls return it at once)."""
        with self._lock:
            if self.bundle is None:
                self.bundle = load_bundle(self.settings.weights_dir, self.device, self.dtype,
                                          self.settings.freevc_config, warm=True,
                                          wav2lip_dtype=lipsync_dtype(self.device, self.settings))
                self._optimized = self._make_optimized(self.bundle)
            return self.bundle

    def _make_optimized(self, bundle: ModelBundle) -> Pipeline:
        from .pipelines.optimized import OptimizedPipeline
        from .voice import VoiceConverter

        s = self.settings
        voice = VoiceConverter(bundle, noise_scale=s.noise_scale, max_source_s=s.max_source_s)
        return OptimizedPipeline(bundle, self.storage, self.tts, voice, s.work_dir, s.weights_dir,
                                 resize_factor=s.resize_factor, strategy=s.face_strategy,
                                 batch_size=s.wav2lip_batch_size, preset=s.x264_preset,
                                 input_cache_entries=s.input_cache_entries,
                                 frame_cache_bytes=s.frame_cache_mb * 1024 * 1024)

    def pipeline(self, optimized: bool) -> Pipeline:
        if optimized:
            if self._optimized is None:
                if self.settings.preload_models:
                    raise NotReadyError("models are still loading; retry shortly (GET /ready says when)")
                self.preload()
            assert self._optimized is not None
            return self._optimized
        from .pipelines.baseline import BaselinePipeline

        s = self.settings
        return BaselinePipeline(self.storage, self.tts, s.weights_dir, self.device, s.freevc_config, s.work_dir,
                                s.half_precision, s.noise_scale)

    def run(self, job: LipVideoJob, optimized: bool) -> LipVideoResult:
        """Run a job on the device, one at a time (blocking; call from a worker thread)."""
        pipeline = self.pipeline(optimized)
        with self.gate.slot():
            return pipeline.run(job)

    def close(self) -> None:
        self.storage.close()
