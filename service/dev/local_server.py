"""Run the real HTTP service against the local GCS emulator, in this process.

The offline demo and the end-to-end benchmark use it: the emulator (fake-gcs-server) and
uvicorn serving ``api.main`` on free loopback ports, called over real HTTP.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..settings import Settings
from .emulator import GCSEmulator, free_port


@contextmanager
def local_service(settings: Settings, emulator: GCSEmulator, ready_timeout_s: float = 600) -> Iterator[str]:
    """Serve the app (uvicorn, in a thread) with ``settings`` pointed at ``emulator``; yields
    its base URL once ``/ready`` answers 200 (or at once when models are not preloaded)."""
    import uvicorn

    from api.main import create_app

    settings = settings.model_copy(update={"storage_emulator_host": emulator.host})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            try:
                status, body = call(url, "GET", "/ready")
                if status == 200 or not settings.preload_models:
                    break
                if body.get("reason", "").startswith(("WeightsMissing", "ModelLoad")):
                    raise RuntimeError(f"service failed to start: {body['reason']}")
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"service not ready after {ready_timeout_s} s")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_until_ready(url: str, timeout_s: float, alive: Callable[[], bool] = lambda: True,
                     why: Callable[[], str] = lambda: "", path: str = "/ready") -> None:
    """Poll ``url + path`` until it answers 200 (a server process starting: models loading,
    replicas warming). RuntimeError, with ``why()`` (e.g. its log's tail), when ``alive()``
    turns false or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not alive():
            raise RuntimeError(f"the server at {url} exited while starting: {why()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server at {url} was not ready after {timeout_s:.0f} s: {why()}")
        try:
            with urllib.request.urlopen(url + path, timeout=5) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.25)


def call(base: str, method: str, path: str, body: dict[str, Any] | None = None,
         timeout: float = 900) -> tuple[int, dict[str, Any]]:
    """One JSON request; returns (status, parsed body) for success and HTTP errors alike."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def upload_to_emulator(emulator: GCSEmulator, bucket: str, name: str, path: Path,
                       content_type: str = "video/mp4") -> str:
    """Seed an object (plain HTTP, like a user's upload); returns its gs:// URI."""
    from urllib.parse import quote

    emulator._request("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={quote(name, safe='')}",
                      path.read_bytes(), {"Content-Type": content_type})
    return f"gs://{bucket}/{name}"


def download_from_emulator(emulator: GCSEmulator, bucket: str, name: str, dest: Path) -> Path:
    from urllib.parse import quote

    status, body = emulator._request("GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media")
    if status != 200:
        raise FileNotFoundError(f"gs://{bucket}/{name} is not in the emulator")
    dest.write_bytes(body)
    return dest
