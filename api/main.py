"""The FastAPI app: ``uvicorn api.main:app``.

Settings are read when the app starts (in the lifespan), not at import. With
``PRELOAD_MODELS=true`` the model bundle is loaded and warmed before ``/ready`` says yes;
``/health`` answers throughout.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from service.logs import configure_logging, request_id
from service.runtime import ServiceRuntime
from service.settings import Settings

from .errors import install_error_handlers
from .metrics import Metrics
from .routes import router

log = logging.getLogger(__name__)

DESCRIPTION = """Lip-sync video generation: a user's video in Cloud Storage plus a word or sentence
→ the user's face saying it in the user's own voice (TTS → FreeVC → Wav2Lip), uploaded back to
Cloud Storage. Every step is timed in the response and in a "Performance Analysis" log block."""


def create_app(settings: Settings | None = None, runtime: ServiceRuntime | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        rt = runtime or ServiceRuntime(settings or Settings())
        app.state.runtime = rt
        app.state.metrics = Metrics()
        app.state.preload_error = None
        task = None
        if rt.settings.preload_models:
            # loading runs in a thread so /health answers while it happens
            task = asyncio.create_task(_preload(app, rt))
        try:
            yield
        finally:
            if task is not None and not task.done():
                await asyncio.shield(task)
            rt.close()

    app = FastAPI(title="lipsync-service", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(router)

    @app.middleware("http")
    async def _request_id(request: Request, call_next):  # noqa: ANN001, ANN202
        rid = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        try:
            response: Response = await call_next(request)
        finally:
            request_id.reset(token)
        response.headers["X-Request-ID"] = rid
        return response

    return app


async def _preload(app: FastAPI, rt: ServiceRuntime) -> None:
    try:
        await asyncio.to_thread(rt.preload)
        log.info("models preloaded and warm on %s", rt.device)
    except Exception as e:  # noqa: BLE001 - reported by /ready and /health, the app keeps serving
        app.state.preload_error = f"{type(e).__name__}: {e}"
        log.error("model preload failed: %s", app.state.preload_error)


app = create_app()
