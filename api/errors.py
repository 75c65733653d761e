"""The one place where service errors become HTTP statuses and JSON error bodies.

Statuses and codes come from the error tree (``service/errors.py``: each class carries its
``code`` and ``http_status``); this module only turns them into responses.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from models import ModelLoadError
from service.errors import ServiceError
from service.logs import request_id
from service.storage.errors import BadURIError
from service.storage.uris import parse_uri

log = logging.getLogger(__name__)

# Starlette's own refusals (unknown route, wrong method...) in the same error shape
CODE_BY_HTTP_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                       413: "input_too_large", 415: "invalid_request", 422: "invalid_request"}

URI_FIELDS = {("user_video_gs",), ("output_video_gs",)}

ErrorCounter = Callable[[str, int], None]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "request_id": request_id.get()}}
    return JSONResponse(body, status_code=status, headers=headers)


def service_error_response(exc: ServiceError) -> JSONResponse:
    """The response for an error of the tree: its status, its code, Retry-After on 503."""
    status = exc.http_status
    headers = {"Retry-After": str(getattr(exc, "retry_after_s", 5))} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(status, exc.code, str(exc), headers)


def validation_message(exc: RequestValidationError) -> str:
    """One line saying which field is wrong and why; a body that is not JSON says so."""
    parts = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            where = e.get("loc", ("body", "?"))[-1]
            detail = (e.get("ctx") or {}).get("error", "malformed JSON")
            return f"the request body is not valid JSON: {detail} (at character {where}); send a JSON object"
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        message = _uri_problem(e) or e.get("msg")
        parts.append(f"{where}: {message}" if where else str(message))
    return "; ".join(parts) or "invalid request"


def _uri_problem(error: Mapping[str, Any]) -> str | None:
    """What is wrong with a storage URI the schema's pattern refused, in the parser's words
    (the pattern itself is no help to a caller); None for other errors."""
    value = error.get("input")
    if error.get("type") != "string_pattern_mismatch" or error.get("loc", ())[-1:] not in URI_FIELDS:
        return None
    try:
        parse_uri(value, local_root=Path("/"))
    except BadURIError as e:
        return str(e)
    return None


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")


def allowed_methods(request: Request) -> str:
    """Every method the request's path supports, for a 405's ``Allow``: Starlette names only
    those of the first route whose path matched (``/api/v1/jobs`` has a POST and a GET route)."""
    routes = request.app.router.routes
    allowed = [method for method in METHODS
               if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI, count: ErrorCounter) -> None:
    """Map every error to ``{"error": {"code", "message", "request_id"}}``; ``count(code,
    status)`` is told about each one (metrics)."""

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        (log.error if exc.http_status >= 500 else log.info)("%s (%d): %s", exc.code, exc.http_status, exc)
        count(exc.code, exc.http_status)
        return service_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        count("invalid_request", 422)
        return error_response(422, "invalid_request", validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers 400 for a JSON body that is not UTF-8; it is as malformed as any
            # other body that is not JSON (422 invalid_request, as declared)
            count("invalid_request", 422)
            return error_response(422, "invalid_request", f"the request body is not valid JSON: it is not "
                                  f"UTF-8 text ({exc.__cause__.reason} at byte {exc.__cause__.start}); "
                                  "send a JSON object in UTF-8")
        code = CODE_BY_HTTP_STATUS.get(exc.status_code, "http_error")
        count(code, exc.status_code)
        # keep Starlette's headers: a 405 carries the Allow header RFC 9110 requires
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(ModelLoadError)
    async def _model(_: Request, exc: ModelLoadError) -> JSONResponse:
        log.error("model load failed: %s", exc)
        count("models_unavailable", 503)
        return error_response(503, "models_unavailable", f"the models could not be loaded: {exc}",
                              {"Retry-After": "30"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        count("internal_error", 500)
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); "
                              "the request id identifies it in the server log")
