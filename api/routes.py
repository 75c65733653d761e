"""HTTP routes. Inference never runs on the event loop: renders go to a worker thread."""
from __future__ import annotations

import asyncio
import logging
import platform
from typing import Annotated

import torch
from fastapi import APIRouter, Depends, Request, Response

from service.errors import ServiceError
from service.precision import NAMES
from service.runtime import ServiceRuntime
from service.settings import model_dtype

from .auth import KeyRing
from .jobs import render_and_wait
from .metrics import CONTENT_TYPE, Metrics
from .schemas import (
    CacheStats,
    CleanupResponse,
    HealthResponse,
    LipVideoRequest,
    LipVideoResponse,
    PreloadResponse,
    ReadyResponse,
    StatusResponse,
    error_responses,
)

log = logging.getLogger(__name__)
router = APIRouter()

RENDER_ERRORS = error_responses(401, 403, 404, 409, 413, 422, 500, 502, 503)
ADMIN_ERRORS = error_responses(401, 403, 500, 503)
READ_ERRORS = error_responses(401, 500)


def runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


def admin(request: Request) -> None:
    """Admin routes need a key named in ADMIN_KEYS (when keys are on)."""
    keys: KeyRing | None = request.app.state.keys
    if keys is not None:
        keys.require_admin(request.state.key_name)


Runtime = Annotated[ServiceRuntime, Depends(runtime)]
AppMetrics = Annotated[Metrics, Depends(metrics)]
Admin = Depends(admin)


async def _render(body: LipVideoRequest, request: Request, optimized: bool) -> LipVideoResponse:
    """A job, waited for (the job runner logs the Performance Analysis and feeds the metrics)."""
    pipeline = "optimized" if optimized else "baseline"
    try:
        return await render_and_wait(request, body, pipeline)
    except ServiceError as e:
        if not hasattr(e, "job_id"):  # refused before it became a job: still a failed request
            metrics(request).failed(pipeline, e.code, request.state.key_name)
        raise


@router.post("/api/v1/lip-video-optimized", response_model=LipVideoResponse, responses=RENDER_ERRORS,
             summary="Lip-sync with the optimized pipeline")
async def lip_video_optimized(body: LipVideoRequest, request: Request) -> LipVideoResponse:
    return await _render(body, request, optimized=True)


@router.post("/api/v1/lip-video", response_model=LipVideoResponse, responses=RENDER_ERRORS,
             summary="Lip-sync with the pipeline USE_OPTIMIZED selects (optimized by default)")
async def lip_video(body: LipVideoRequest, request: Request) -> LipVideoResponse:
    return await _render(body, request, optimized=runtime(request).settings.use_optimized)


@router.post("/api/v1/preload-models", response_model=PreloadResponse, responses=ADMIN_ERRORS,
             dependencies=[Admin], summary="Load and warm the models (idempotent; admin)")
async def preload_models(rt: Runtime) -> PreloadResponse:
    bundle = await asyncio.to_thread(rt.preload)
    return PreloadResponse(load_seconds={t.name: round(t.load_s, 3) for t in bundle.timings},
                           warmup_seconds={t.name: round(t.warmup_s, 3) for t in bundle.timings})


@router.get("/health", response_model=HealthResponse, summary="Liveness: always 200 while the process serves")
async def health(rt: Runtime) -> HealthResponse:
    bundle = rt.bundle
    return HealthResponse(ready=rt.ready, device=str(rt.device),
                          precision={"lipsync": NAMES[rt.lipsync_dtype], "voice": NAMES[rt.dtype],
                                     "baseline": NAMES[model_dtype(rt.device, rt.settings.half_precision)]},
                          models_loaded=bundle.loaded if bundle else [],
                          warm=rt.ready, preload_error=rt.preload_error, requests_in_flight=rt.gate.pending,
                          supported_languages=rt.tts.supported_languages(),
                          versions={"service": "0.1.0", "torch": torch.__version__,
                                    "python": platform.python_version()})


@router.get("/ready", response_model=ReadyResponse,
            responses={503: {"model": ReadyResponse, "description": "Not ready: loading, or the preload failed",
                             "headers": {"Retry-After": {"schema": {"type": "integer"}}}}},
            summary="Readiness: 200 once the models are loaded and warm, else 503")
async def ready(rt: Runtime, response: Response) -> ReadyResponse:
    if rt.ready and not rt.stopping.is_set():
        return ReadyResponse(ready=True)
    response.status_code = 503
    response.headers["Retry-After"] = "10"
    reason = "shutting down" if rt.stopping.is_set() else rt.not_ready_reason
    return ReadyResponse(ready=False, reason=reason)


@router.get("/api/v1/tts/cache/stats", response_model=CacheStats, responses=READ_ERRORS,
            summary="TTS audio cache statistics")
async def tts_cache_stats(rt: Runtime) -> CacheStats:
    return CacheStats(**await asyncio.to_thread(rt.tts.cache.stats))


@router.post("/api/v1/tts/cache/cleanup", response_model=CleanupResponse, responses=ADMIN_ERRORS,
             dependencies=[Admin], summary="Remove expired TTS cache entries (admin)")
async def tts_cache_cleanup(rt: Runtime) -> CleanupResponse:
    return CleanupResponse(removed=await asyncio.to_thread(rt.tts.cache.cleanup))


@router.delete("/api/v1/tts/cache/clear", response_model=StatusResponse, responses=ADMIN_ERRORS,
               dependencies=[Admin], summary="Empty the TTS cache (admin)")
async def tts_cache_clear(rt: Runtime) -> StatusResponse:
    await asyncio.to_thread(rt.tts.cache.clear)
    return StatusResponse()


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text exposition format)",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format 0.0.4"}, **READ_ERRORS})
async def prometheus(m: AppMetrics, rt: Runtime) -> Response:
    m.sample_jobs(rt.jobs)
    return Response(m.render(), media_type=CONTENT_TYPE)
