"""The page to try the service: ``GET /`` and its static files, no build step.

Plain HTML, CSS and JavaScript from ``api/static/`` (package data). The page itself holds
nothing secret, so it answers without an API key; everything it does goes through the API
with the key the user types (``Authorization: Bearer``). ``UI_ENABLED=false``: 404.
"""
from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from service.errors import NotFoundError

from .uploads import store_uri

STATIC = Path(__file__).parent / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
"""The files served under /static/ (and nothing else from the folder)."""

router = APIRouter(include_in_schema=False)


def is_page_path(path: str) -> bool:
    """Paths that answer without an API key: the page and its assets."""
    return path == "/" or path.startswith("/static/")


def _enabled(request: Request) -> None:
    if not request.app.state.runtime.settings.ui_enabled:
        raise NotFoundError("the page is off on this service (UI_ENABLED=false); the API is at /docs")


@router.get("/", response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    _enabled(request)
    settings = request.app.state.runtime.settings
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    # where the page's jobs write their output (next to the uploads) and whether to ask for a key
    text = text.replace("{{upload_store}}", html.escape(store_uri(settings), quote=True))
    text = text.replace("{{keys}}", "on" if settings.api_keys_file is not None else "off")
    return HTMLResponse(text, headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}")
async def asset(name: str, request: Request) -> FileResponse:
    _enabled(request)
    if name not in ASSETS:
        raise NotFoundError(f"no page asset {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})
