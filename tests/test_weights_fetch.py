"""`lipsync weights fetch` against a local HTTP server: resume, truncation, hash checks."""
from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.weights.catalog import WeightFile
from service.weights.fetch import FetchError, fetch_file

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB of known bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # per path: how many of the next GETs are cut short after half the body
    truncate_next: dict[str, int]
    range_requests: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        body, status = PAYLOAD, 200
        rng = self.headers.get("Range")
        if rng and not self.path.startswith("/norange"):
            self.server.range_requests.append(rng)
            start = int(rng.split("=")[1].split("-")[0])
            body, status = PAYLOAD[start:], 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.truncate_next.get(self.path, 0) > 0:
            self.server.truncate_next[self.path] -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.truncate_next, srv.range_requests = {}, []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: _Server, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def _file(srv: _Server, path: str = "/w.pth", sha: str | None = SHA) -> WeightFile:
    return WeightFile("w.pth", "wav2lip", "test file", (_url(srv, path),), sha256=sha, size=len(PAYLOAD))


def test_downloads_and_verifies(server: _Server, tmp_path: Path) -> None:
    dest = fetch_file(_file(server), tmp_path)
    assert dest == tmp_path / "w.pth" and dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "w.pth.partial").exists()


def test_truncated_transfer_resumes_with_range(server: _Server, tmp_path: Path) -> None:
    server.truncate_next["/w.pth"] = 1
    dest = fetch_file(_file(server), tmp_path)
    assert dest.read_bytes() == PAYLOAD
    assert server.range_requests == [f"bytes={len(PAYLOAD) // 2}-"]


def test_server_without_range_support_restarts(server: _Server, tmp_path: Path) -> None:
    server.truncate_next["/norange.pth"] = 1
    dest = fetch_file(_file(server, "/norange.pth"), tmp_path)
    assert dest.read_bytes() == PAYLOAD


def test_keeps_partial_when_every_attempt_is_cut(server: _Server, tmp_path: Path) -> None:
    server.truncate_next["/w.pth"] = 99
    with pytest.raises(FetchError, match="partial data kept"):
        fetch_file(_file(server), tmp_path, attempts=1)
    assert not (tmp_path / "w.pth").exists()
    assert (tmp_path / "w.pth.partial").stat().st_size == len(PAYLOAD) // 2
    server.truncate_next["/w.pth"] = 0
    assert fetch_file(_file(server), tmp_path).read_bytes() == PAYLOAD  # resumed


def test_wrong_hash_is_removed_and_reported(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="SHA-256 mismatch"):
        fetch_file(_file(server, sha="0" * 64), tmp_path)
    assert not (tmp_path / "w.pth").exists() and not (tmp_path / "w.pth.partial").exists()


def test_falls_back_to_next_mirror(server: _Server, tmp_path: Path) -> None:
    w = WeightFile("w.pth", "wav2lip", "t", (_url(server, "/missing"), _url(server, "/w.pth")), sha256=SHA)
    assert fetch_file(w, tmp_path).read_bytes() == PAYLOAD


def test_all_mirrors_missing(server: _Server, tmp_path: Path) -> None:
    w = WeightFile("w.pth", "wav2lip", "t", (_url(server, "/missing"),), sha256=SHA)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_file(w, tmp_path)


def test_verified_file_is_not_downloaded_again(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "w.pth").write_bytes(PAYLOAD)
    w = WeightFile("w.pth", "wav2lip", "t", (_url(server, "/missing"),), sha256=SHA)
    assert fetch_file(w, tmp_path).read_bytes() == PAYLOAD


def test_corrupt_existing_file_is_replaced(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "w.pth").write_bytes(b"garbage")
    assert fetch_file(_file(server), tmp_path).read_bytes() == PAYLOAD
