"""The one place where service errors become HTTP statuses and JSON error bodies."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models import ModelLoadError
from service.errors import BadInputError, ServiceError
from service.logs import request_id

log = logging.getLogger(__name__)

# stable error codes → HTTP status; anything else derived from the class tree below
STATUS_BY_CODE = {
    "object_not_found": 404,
    "bucket_not_found": 404,
    "storage_access_denied": 502,
    "storage_error": 502,
    "object_changed": 409,
    "storage_unavailable": 503,
    "tts_unavailable": 503,
    "server_busy": 503,
    "not_ready": 503,
    "weights_missing": 503,
    "output_exists": 409,
    "input_too_large": 413,
}


def status_for(exc: ServiceError) -> int:
    if exc.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[exc.code]
    return 422 if isinstance(exc, BadInputError) else 500


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "request_id": request_id.get()}}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        status = status_for(exc)
        headers = {"Retry-After": str(getattr(exc, "retry_after_s", 5))} if status == 503 else None
        (log.error if status >= 500 else log.info)("%s (%d): %s", exc.code, status, exc)
        return error_response(status, exc.code, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(ModelLoadError)
    async def _model(_: Request, exc: ModelLoadError) -> JSONResponse:
        log.error("model load failed: %s", exc)
        return error_response(500, "model_load_error", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); "
                              "the request id identifies it in the server log")
