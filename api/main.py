"""The FastAPI app: ``uvicorn api.main:app``.

Settings are read when the app starts (in the lifespan), not at import. With
``PRELOAD_MODELS=true`` the model bundle is loaded and warmed before ``/ready`` says yes;
``/health`` answers throughout.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI, Request, Response

from service.errors import UnauthorizedError
from service.logs import configure_logging, request_id
from service.runtime import ServiceRuntime
from service.settings import Settings, SettingsError, load_settings

from .auth import OPEN_PATHS, KeyRing, with_api_keys
from .errors import install_error_handlers, service_error_response
from .jobs import router as jobs_router
from .metrics import Metrics
from .page import is_page_path
from .page import router as page_router
from .routes import router
from .uploads import router as uploads_router

log = logging.getLogger(__name__)

DESCRIPTION = """Lip-sync video generation: a user's video in Cloud Storage plus a word or sentence
→ the user's face saying it in the user's own voice (TTS → FreeVC → Wav2Lip), uploaded back to
Cloud Storage. Every step is timed in the response and in a "Performance Analysis" log block."""


def create_app(settings: Settings | None = None, runtime: ServiceRuntime | None = None,
               runtime_factory: Callable[[Settings], ServiceRuntime] = ServiceRuntime) -> FastAPI:
    """The app. Settings come from the environment at start-up unless given; the runtime is
    built from them by ``runtime_factory`` (the Ray ingress renders on replicas) unless given."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        try:
            s = runtime.settings if runtime is not None else settings or load_settings()
            configure_logging(log_format=s.log_format)
            keys = _trust(s)
        except SettingsError as e:
            log.error("%s", e)  # one line naming the variable, then the start fails
            raise
        rt = runtime or runtime_factory(s)
        app.state.runtime, app.state.keys = rt, keys
        rt.job_listeners.append(metrics.job_finished)
        rt.start()
        _drain_on_sigterm(rt)
        task = None
        if rt.settings.preload_models:
            # loading runs in a thread so /health answers while it happens
            task = asyncio.create_task(_preload(rt))
        try:
            yield
        finally:
            if task is not None and not task.done():
                await asyncio.shield(task)
            await asyncio.to_thread(rt.drain, rt.settings.shutdown_grace_s)
            rt.close()

    app = FastAPI(title="lipsync-service", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.metrics = metrics
    install_error_handlers(app, metrics.error)
    app.include_router(router)
    app.include_router(uploads_router)  # before the jobs: /api/v1/jobs/{job_id}/video
    app.include_router(jobs_router)
    app.include_router(page_router)
    _declare_api_keys(app)

    @app.middleware("http")
    async def _authenticate(request: Request, call_next):  # noqa: ANN001, ANN202
        keys: KeyRing | None = getattr(request.app.state, "keys", None)
        request.state.key_name = None
        if keys is not None and request.url.path not in OPEN_PATHS and not is_page_path(request.url.path):
            try:
                request.state.key_name = keys.identify(request.headers.get("authorization"))
            except UnauthorizedError as e:
                metrics.error(e.code, e.http_status)
                return service_error_response(e)
        return await call_next(request)

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

    metrics.instrument(app)  # last: it times and counts the answers of the middlewares above too
    return app


def _declare_api_keys(app: FastAPI) -> None:
    """/openapi.json says what this instance requires: with API keys (known once the lifespan
    has read the settings, before any request) every operation but the probes needs the
    bearer key; without them the API is open and the schema declares no security."""
    plain = app.openapi
    secured: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if getattr(app.state, "keys", None) is None:
            return plain()
        if not secured:
            secured.update(with_api_keys(plain()))
        return secured

    app.openapi = openapi  # type: ignore[method-assign]


def _trust(settings: Settings) -> KeyRing | None:
    """The key ring (None: open), with one warning for each protection left off."""
    keys = None
    if settings.api_keys_file is not None:
        keys = KeyRing.load(settings.api_keys_file, settings.admin_keys)
        log.info("API keys: %d key(s) from %s, %d admin", len(keys.names_by_digest), settings.api_keys_file,
                 len(keys.admins))
    else:
        log.warning("API_KEYS_FILE is not set: the API is open to anyone who can reach it")
    if not settings.allowed_buckets:
        log.warning("ALLOWED_BUCKETS is not set: requests may read and write any bucket the credentials reach")
    return keys


def _drain_on_sigterm(rt: ServiceRuntime) -> None:
    """On SIGTERM (what Docker and Kubernetes send): refuse new renders at once, give the
    running ones SHUTDOWN_GRACE_S, then interrupt them; then the server's own handler stops
    accepting connections and waits for the answers to go out."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals can only be handled in the main thread (an embedded or test server)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        log.info("SIGTERM: draining (grace %.0f s)", rt.settings.shutdown_grace_s)
        threading.Thread(target=rt.drain, args=(rt.settings.shutdown_grace_s,), name="drain", daemon=True).start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


async def _preload(rt: ServiceRuntime) -> None:
    try:
        await asyncio.to_thread(rt.preload)
        log.info("models preloaded and warm on %s", rt.device)
    except Exception:  # noqa: BLE001 - reported by /ready, /health and every request; the app keeps serving
        log.error("model preload failed: %s", rt.preload_error)


app = create_app()
