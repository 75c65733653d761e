"""One process's service state: settings, storage, TTS, the preloaded bundle, the pipelines.

Built by the API's lifespan (or a test) from explicit settings; nothing here reads the
environment. ``preload()`` is idempotent and thread-safe.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models import ModelLoadError

from .bundle import ModelBundle, load_bundle
from .concurrency import DeviceGate, DeviceThread
from .errors import ModelsUnavailableError, ServerBusyError, WebhookNotAllowedError
from .jobs.queue import Execute, JobQueue
from .jobs.records import JobRecord
from .jobs.store import NO_STORE, make_job_store
from .jobs.webhooks import EVENTS, check_webhook_url, deliver
from .logs import job_id, request_id
from .memory import reuse_freed_memory
from .pipelines import LipVideoJob, LipVideoResult, Pipeline
from .pipelines.artefacts import ArtefactStore
from .pipelines.checks import check_request
from .pipelines.common import ProgressReport, StopCheck, remove_stale_request_dirs
from .pipelines.report import log_performance, result_json
from .precision import log_choice
from .settings import Settings, lipsync_dtype, resolve_device, voice_dtype
from .storage import Storage

if TYPE_CHECKING:
    from .tts import TextToSpeech

log = logging.getLogger(__name__)


class ServiceRuntime:
    """``remote(runtime)``: makes the executor that runs a job's render somewhere else (a Ray
    Serve renderer) instead of in this process, ``workers`` jobs at once; ``readiness`` then
    says whether that is ready (None when ready, else why not). ``jobs=False``: a process that
    only renders (a replica)."""

    def __init__(self, settings: Settings, *, remote: Callable[[ServiceRuntime], Execute] | None = None,
                 workers: int = 1,
                 readiness: Callable[[], str | None] | None = None, jobs: bool = True,
                 served_by: str | None = None) -> None:
        from .tts import TextToSpeech

        self.settings = settings
        if settings.reuse_freed_memory:
            reuse_freed_memory()
        self.device = resolve_device(settings.device)
        self.dtype = voice_dtype(self.device, settings)  # WavLM and FreeVC; Wav2Lip has its own
        self.lipsync_dtype = lipsync_dtype(self.device, settings)
        log_choice(self.device, settings.half_precision, lipsync=(settings.lipsync_precision, self.lipsync_dtype),
                   voice=(settings.voice_precision, self.dtype))
        local_root = settings.local_storage_root
        if local_root is None and settings.ui_enabled and not settings.upload_store:
            # the page's uploads (default $WORK_DIR/uploads) are file:// inputs and outputs of
            # jobs: allow exactly that folder when no LOCAL_STORAGE_ROOT opens more
            local_root = Path(settings.upload_location())
            local_root.mkdir(parents=True, exist_ok=True)
        self.storage = Storage(emulator_host=settings.storage_emulator_host, project=settings.gcp_project,
                               local_root=local_root,
                               max_download_bytes=settings.max_download_bytes,
                               overwrite=settings.overwrite_output,
                               allowed_buckets=settings.allowed_buckets or None)
        self.tts: TextToSpeech = TextToSpeech.from_settings(settings)
        self.gate = DeviceGate(settings.max_waiting_requests)
        self.device_thread = DeviceThread()
        """Where preload and renders run (see :class:`DeviceThread`: one OpenMP team)."""
        self.bundle: ModelBundle | None = None
        self._optimized: Pipeline | None = None
        self._lock = threading.Lock()
        self.preload_error: str | None = None
        """Why the last preload failed (``Type: message``), for /ready and for requests."""
        self.stopping = threading.Event()
        """Set on shutdown: no new renders; running ones stop once ``interrupting`` is set."""
        self.interrupting = threading.Event()
        self._readiness = readiness
        # a killed process (kill -9, OOM) leaves its per-request folders behind: no request of
        # this process owns them yet
        removed = remove_stale_request_dirs(settings.work_dir)
        if removed:
            log.warning("removed %d request folder(s) left by an earlier process in %s", removed, settings.work_dir)
        self.served_by = served_by or f"{socket.gethostname()}:{os.getpid()}"
        self.jobs = JobQueue(make_job_store(settings.job_store, settings.work_dir, self.storage.gcs) if jobs
                             else NO_STORE, remote(self) if remote else self.execute, served_by=self.served_by,
                             max_queued=settings.max_queued_jobs, max_attempts=settings.job_max_attempts,
                             ttl_s=settings.job_ttl_s, on_finished=self._job_finished, workers=workers)
        self.job_listeners: list[Callable[[JobRecord], None]] = []
        """Called with every finished job (after its webhook): metrics hang here."""

    def start(self) -> None:
        """Resume the jobs an earlier process left and start running jobs."""
        self.jobs.start()

    @property
    def ready(self) -> bool:
        if self._readiness is not None:
            return self._readiness() is None
        return self._optimized is not None

    @property
    def not_ready_reason(self) -> str:
        if self._readiness is not None:
            return self._readiness() or ""
        return self.preload_error or "models are loading"

    def preload(self) -> ModelBundle:
        """Load and warm the bundle once (later calls return it at once). A failure is kept
        in ``preload_error`` (requests then fail fast with its reason) and raised."""
        with self._lock:
            if self.bundle is None:
                try:
                    # warmed on the thread the renders run on (DeviceThread)
                    bundle = self.device_thread.run(load_bundle, self.settings.weights_dir, self.device,
                                                    self.dtype, self.settings.freevc_config, warm=True,
                                                    wav2lip_dtype=self.lipsync_dtype,
                                                    pack=self.settings.pack_weights)
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
                                 frame_cache_bytes=s.frame_cache_mb * 1024 * 1024,
                                 artefacts=ArtefactStore(s.cache_store, s.work_dir, self.storage.gcs,
                                                         namespace=_models_tag(bundle, s.weights_dir)))

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

    def run(self, job: LipVideoJob, optimized: bool, should_stop: StopCheck | None = None,
            progress: ProgressReport | None = None) -> LipVideoResult:
        """Check, then run a render on the device, one at a time (blocking; call from a worker
        thread). Stops at the next step or batch with :class:`InterruptedJobError` once
        ``should_stop()`` (or the service's shutdown) says so."""
        self.check(job)
        pipeline = self.pipeline(optimized)
        stop = should_stop or self.interrupting.is_set
        with self.gate.slot():
            return self.device_thread.run(pipeline.run, job, should_stop=stop, progress=progress)

    # ---- jobs -------------------------------------------------------------------------------

    def submit(self, request: dict[str, Any], pipeline: str, *, owner: str | None = None,
               webhook_url: str | None = None, idempotency_key: str | None = None,
               detached: bool = True, rid: str = "-") -> tuple[JobRecord, bool]:
        """Check everything a job can be checked for now, then queue it: a job is only
        created for a request that can run. (record, created)."""
        if self.stopping.is_set():
            raise ServerBusyError("the service is shutting down; retry on another instance", 5)
        if not self.ready and self.preload_error is not None:  # first: nothing else matters then
            raise ModelsUnavailableError(f"the models could not be loaded ({self.preload_error}); "
                                         "an operator must fix the weights and restart the service")
        self.check(self._render_job(request, rid))
        if webhook_url is not None:
            if not self.settings.webhook_secret:
                raise WebhookNotAllowedError("this service has no WEBHOOK_SECRET to sign webhooks with, so it "
                                             "sends none: poll the job instead, or ask its operator to set one")
            check_webhook_url(webhook_url, self.settings.webhook_allowed_hosts)
        return self.jobs.submit(request, pipeline, owner=owner, webhook_url=webhook_url,
                                idempotency_key=idempotency_key, detached=detached, request_id=rid)

    def execute(self, record: JobRecord, progress: ProgressReport, should_stop: StopCheck) -> dict[str, Any]:
        """Run a job's render (the job runner calls this): its success JSON, with ``job_id``."""
        token, job_token = request_id.set(record.request_id), job_id.set(record.job_id)
        try:
            result = self.run(self._render_job(record.request, record.request_id), record.pipeline == "optimized",
                              should_stop=should_stop, progress=progress)
            log_performance(result, record.owner)
            return result_json(result, record.request_id) | {"job_id": record.job_id, "served_by": self.served_by}
        finally:
            job_id.reset(job_token)
            request_id.reset(token)

    @staticmethod
    def _render_job(request: dict[str, Any], rid: str) -> LipVideoJob:
        box = request.get("face_box")
        return LipVideoJob(text=request["word"], lang=request.get("tts_lang", "ko"), input_uri=request["user_video_gs"],
                           output_uri=request["output_video_gs"], request_id=rid, tts_engine=request.get("tts_engine"),
                           resize_factor=request.get("resize_factor"), face_box=tuple(box) if box else None)

    def _job_finished(self, record: JobRecord) -> None:
        if record.webhook is not None and self.settings.webhook_secret:
            body = json.dumps(record.public(), ensure_ascii=False).encode()
            outcome = deliver(record.webhook.url, body, EVENTS[record.status], self.settings.webhook_secret,
                              allowed_hosts=self.settings.webhook_allowed_hosts)
            record.webhook.delivered, record.webhook.attempts = outcome.delivered, outcome.attempts
            record.webhook.last_status = outcome.last_status
            self.jobs.update(record)
        for listener in self.job_listeners:
            listener(record)

    def drain(self, grace_s: float) -> bool:
        """Stop taking jobs, give the running one ``grace_s`` to finish, then interrupt it
        and wait until it has cleaned up. True when nothing had to be interrupted."""
        self.stopping.set()
        finished = self.jobs.close(grace_s)
        self.interrupting.set()  # anything else still on the device stops at its next batch
        while self.gate.pending:
            time.sleep(0.05)
        return finished

    def close(self) -> None:
        self.storage.close()
        self.device_thread.close()


def _models_tag(bundle: ModelBundle, weights_dir: Path) -> str:
    """What shared artefacts depend on: the speaker encoder's and the face detector's files
    (name and size), so a store shared across deployments never mixes models."""
    from .face import S3FD_FILE

    speaker = next((t.file for t in bundle.timings if t.name == "speaker"), "packaged")
    files = [Path(speaker), weights_dir / S3FD_FILE]
    return ";".join(f"{p.name}:{p.stat().st_size if p.is_file() else '-'}" for p in files)
