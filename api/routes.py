"""HTTP routes. Inference never runs on the event loop: jobs go to a worker thread."""
from __future__ import annotations

import asyncio
import logging
import platform
from typing import Annotated

import torch
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from service.logs import request_id
from service.pipelines import LipVideoJob, LipVideoResult
from service.runtime import ServiceRuntime
from service.timing import format_table

from .metrics import CONTENT_TYPE, Metrics
from .schemas import ErrorResponse, LipVideoRequest, LipVideoResponse, PreloadResponse

log = logging.getLogger(__name__)
router = APIRouter()

ERRORS = {status: {"model": ErrorResponse} for status in (404, 409, 422, 500, 502, 503)}


def runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


Runtime = Annotated[ServiceRuntime, Depends(runtime)]
AppMetrics = Annotated[Metrics, Depends(metrics)]


async def _render(body: LipVideoRequest, rt: ServiceRuntime, m: AppMetrics, optimized: bool) -> LipVideoResponse:
    job = LipVideoJob(text=body.word, lang=body.tts_lang, input_uri=body.user_video_gs,
                      output_uri=body.output_video_gs, request_id=request_id.get(), tts_engine=body.tts_engine,
                      resize_factor=body.resize_factor, face_box=body.face_box)
    name = "optimized" if optimized else "baseline"
    try:
        result: LipVideoResult = await asyncio.to_thread(rt.run, job, optimized)
    except Exception as e:
        m.failed(name, getattr(e, "code", "internal_error"))
        raise
    m.observe(result)
    _log_performance(result)
    return LipVideoResponse(output_video_gs=result.output_uri, pipeline=result.pipeline,
                            duration_s=round(result.duration_s, 3), step_times=result.step_times,  # type: ignore[arg-type]
                            cache_hits=result.cache_hits, request_id=request_id.get())  # type: ignore[arg-type]


def _log_performance(r: LipVideoResult) -> None:
    steps = {k: v for k, v in r.step_times.items() if k != "total"}
    hits = ", ".join(f"{k}={'hit' if v else 'miss'}" for k, v in r.cache_hits.items())
    table = format_table(steps, r.step_times["total"], f"Performance Analysis ({r.pipeline})")
    log.info("\n%s\ninput %.1f MB, output %.1f MB, %d frames, %.2f s video; caches: %s", table,
             r.input_bytes / 1e6, r.output_bytes / 1e6, r.frames, r.duration_s, hits)


@router.post("/api/v1/lip-video-optimized", response_model=LipVideoResponse, responses=ERRORS,
             summary="Lip-sync with the optimized pipeline")
async def lip_video_optimized(body: LipVideoRequest, rt: Runtime, m: AppMetrics) -> LipVideoResponse:
    return await _render(body, rt, m, optimized=True)


@router.post("/api/v1/lip-video", response_model=LipVideoResponse, responses=ERRORS,
             summary="Lip-sync with the pipeline USE_OPTIMIZED selects (optimized by default)")
async def lip_video(body: LipVideoRequest, rt: Runtime, m: AppMetrics) -> LipVideoResponse:
    return await _render(body, rt, m, optimized=rt.settings.use_optimized)


@router.post("/api/v1/preload-models", response_model=PreloadResponse, responses=ERRORS,
             summary="Load and warm the models (idempotent)")
async def preload_models(rt: Runtime) -> PreloadResponse:
    bundle = await asyncio.to_thread(rt.preload)
    return PreloadResponse(load_seconds={t.name: round(t.load_s, 3) for t in bundle.timings},
                           warmup_seconds={t.name: round(t.warmup_s, 3) for t in bundle.timings})


@router.get("/health", summary="Liveness: always 200 while the process serves")
async def health(request: Request, rt: Runtime) -> dict[str, object]:
    bundle = rt.bundle
    return {
        "status": "ok",
        "ready": rt.ready,
        "device": str(rt.device),
        "models_loaded": bundle.loaded if bundle else [],
        "warm": rt.ready,
        "preload_error": request.app.state.preload_error,
        "requests_in_flight": rt.gate.pending,
        "supported_languages": rt.tts.supported_languages(),
        "versions": {"service": "0.1.0", "torch": torch.__version__, "python": platform.python_version()},
    }


@router.get("/ready", summary="Readiness: 200 once the models are loaded and warm, else 503")
async def ready(request: Request, rt: Runtime) -> JSONResponse:
    if rt.ready:
        return JSONResponse({"ready": True})
    reason = request.app.state.preload_error or "models are loading"
    return JSONResponse({"ready": False, "reason": reason}, status_code=503, headers={"Retry-After": "10"})


@router.get("/api/v1/tts/cache/stats", summary="TTS audio cache statistics")
async def tts_cache_stats(rt: Runtime) -> dict[str, object]:
    return await asyncio.to_thread(rt.tts.cache.stats)


@router.post("/api/v1/tts/cache/cleanup", summary="Remove expired TTS cache entries")
async def tts_cache_cleanup(rt: Runtime) -> dict[str, object]:
    removed = await asyncio.to_thread(rt.tts.cache.cleanup)
    return {"status": "ok", "removed": removed}


@router.delete("/api/v1/tts/cache/clear", summary="Empty the TTS cache")
async def tts_cache_clear(rt: Runtime) -> dict[str, object]:
    await asyncio.to_thread(rt.tts.cache.clear)
    return {"status": "ok"}


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus(m: AppMetrics) -> Response:
    return Response(m.render(), media_type=CONTENT_TYPE)
