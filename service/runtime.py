"""One process's service state: settings, storage, TTS, the preloaded bundle, the pipelines.

Built by the API's lifespan (or a test) from explicit settings; nothing here reads the
environment. ``preload()`` is idempotent and thread-safe.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from models import ModelLoadError

from .bundle import ModelBundle, load_bundle
from .concurrency import DeviceGate
from .errors import ModelsUnavailableError, ServerBusyError
from .pipelines import LipVideoJob, LipVideoResult, Pipeline
from .pipelines.checks import check_request
from .pipelines.common import remove_stale_request_dirs
from .settings import Settings, lipsync_dtype, resolve_device, voice_dtype
from .storage import Storage

if TYPE_CHECKING:
    from .tts import TextToSpeech

log = logging.getLogger(__name__)


class ServiceRuntime:
    def __init__(self, settings: Settings) -> None:
        from .tts import TextToSpeech

        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = voice_dtype(self.device, settings)  # WavLM and FreeVC; Wav2Lip has its own
        self.storage = Storage(emulator_host=settings.storage_emulator_host, project=settings.gcp_project,
                               local_root=settings.local_storage_root,
                               max_download_bytes=settings.max_download_bytes,
                               overwrite=settings.overwrite_output,
                               allowed_buckets=settings.allowed_buckets or None)
        self.tts: TextToSpeech = TextToSpeech.from_settings(settings)
        self.gate = DeviceGate(settings.max_waiting_requests)
        self.bundle: ModelBundle | None = None
        self._optimized: Pipeline | None = None
        self._lock = threading.Lock()
        self.preload_error: str | None = None
        """Why the last preload failed (``Type: message``), for /ready and for requests."""
        self.stopping = threading.Event()
        """Set on shutdown: no new renders; running ones stop once ``interrupting`` is set."""
        self.interrupting = threading.Event()
        # a killed process (kill -9, OOM) leaves its per-request folders behind: no request of
        # this process owns them yet
        removed = remove_stale_request_dirs(settings.work_dir)
        if removed:
            log.warning("removed %d request folder(s) left by an earlier process in %s", removed, settings.work_dir)

    @property
    def ready(self) -> bool:
        return self._optimized is not None

    def preload(self) -> ModelBundle:
        """Load and warm the bundle once (later calls return it at once). A failure is kept
        in ``preload_error`` (requests then fail fast with its reason) and raised."""
        with self._lock:
            if self.bundle is None:
                try:
                    bundle = load_bundle(self.settings.weights_dir, self.device, self.dtype,
                                         self.settings.freevc_config, warm=True,
                                         wav2lip_dtype=lipsync_dtype(self.device, self.settings))
                    self._optimized = self._make_optimized(bundle)
                except Exception as e:
                    self.preload_error = f"{type(e).__name__}: {e}"
                    raise
                self.bundle, self.preload_error = bundle, None
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
                if self.preload_error is not None:
                    raise ModelsUnavailableError(f"the models could not be loaded ({self.preload_error}); "
                                                 "an operator must fix the weights and restart the service")
                if self.settings.preload_models:
                    raise ModelsUnavailableError("the models are still loading; retry shortly "
                                                 "(GET /ready answers 200 once they are warm)")
                try:
                    self.preload()
                except ModelLoadError as e:
                    raise ModelsUnavailableError(f"the models could not be loaded ({self.preload_error})") from e
            assert self._optimized is not None
            return self._optimized
        from .pipelines.baseline import BaselinePipeline

        s = self.settings
        return BaselinePipeline(self.storage, self.tts, s.weights_dir, self.device, s.freevc_config, s.work_dir,
                                s.half_precision, s.noise_scale)

    def check(self, job: LipVideoJob) -> None:
        """Every check of ``job`` that needs no download or model (URIs, bucket allowlist,
        output bucket and object, box shape): raises the error the request deserves."""
        check_request(job, self.storage)

    def run(self, job: LipVideoJob, optimized: bool) -> LipVideoResult:
        """Check, then run a job on the device, one at a time (blocking; call from a worker
        thread). Stops at the next step or batch with :class:`InterruptedJobError` once the
        service is interrupting (shutdown grace over)."""
        if self.stopping.is_set():
            raise ServerBusyError("the service is shutting down; retry on another instance", 5)
        self.check(job)
        pipeline = self.pipeline(optimized)
        with self.gate.slot():
            return pipeline.run(job, should_stop=self.interrupting.is_set)

    def drain(self, grace_s: float) -> bool:
        """Stop taking renders, give the running ones ``grace_s`` to finish, then interrupt
        them and wait until they have cleaned up. True when none had to be interrupted."""
        self.stopping.set()
        deadline = time.monotonic() + grace_s
        while self.gate.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.gate.pending:
            return True
        log.warning("shutdown: %d render(s) still running after %.0f s; interrupting them",
                    self.gate.pending, grace_s)
        self.interrupting.set()
        while self.gate.pending:
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.storage.close()
