"""Storage: URI validation, file:// confinement and atomic writes, and gs:// against the real
fake-gcs-server emulator, including outages (the emulator is stopped mid-operation)."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
import urllib3

from service.errors import BadInputError
from service.storage import (
    BadURIError,
    BucketNotFoundError,
    GcsUri,
    InputTooLargeError,
    LocalUri,
    ObjectChangedError,
    ObjectInfo,
    ObjectNotFoundError,
    OutputExistsError,
    Storage,
    StorageAccessDeniedError,
    StorageError,
    StorageUnavailableError,
    parse_uri,
)

if TYPE_CHECKING:
    from tests.gcs_emulator import EmulatorBucket, GCSEmulator

pytest_plugins = ["tests.gcs_emulator"]  # the emulator fixtures (also fine once conftest loads them)

MiB = 1024 * 1024


def emulated(emulator: GCSEmulator, **kwargs: Any) -> Storage:
    """A Storage on the emulator with fast retries (3 attempts, 10-50 ms apart)."""
    return Storage(emulator_host=emulator.host, retries=2, backoff_initial_s=0.01, backoff_max_s=0.05,
                   timeout_s=5.0, **kwargs)


# -- helpers ---------------------------------------------------------------------------------------

Send = Callable[[], requests.Response]
Script = Callable[[int, str, str, Send], requests.Response]


class ScriptedSession(requests.Session):
    """A transport whose ``script(n, method, url, send)`` decides, per request (n counts from 1),
    whether to send it for real (``send()``), answer it itself, or fail it."""

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.calls: list[tuple[str, str]] = []
        self.sent_headers: list[dict[str, str]] = []  # the headers the library set on each request

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        m, u = str(method), str(url)
        self.calls.append((m, u))
        self.sent_headers.append(dict(kwargs.get("headers") or {}))
        return self.script(len(self.calls), m, u, lambda: super(ScriptedSession, self).request(m, u, *args, **kwargs))


def fake_response(status: int, method: str, url: str) -> requests.Response:
    body = f'{{"error": {{"code": {status}, "message": "injected {status}"}}}}'.encode()
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers["Content-Type"] = "application/json"
    response.url = url
    response.request = requests.Request(method, url).prepare()
    return response


def is_upload(method: str, url: str) -> bool:
    return "/upload/storage/v1/" in url


def is_media_read(method: str, url: str) -> bool:
    return method == "GET" and "alt=media" in url


def is_chunk(method: str, url: str) -> bool:
    """One chunk of a resumable upload (sent to the session URL)."""
    return method == "PUT" and "upload_id=" in url


def is_session_start(method: str, url: str) -> bool:
    return method == "POST" and "uploadType=resumable" in url


class CutBody:
    """A streamed response body that breaks after ``keep`` bytes, as a dropped connection does;
    ``corrupt`` flips the bytes it does deliver."""

    def __init__(self, raw: Any, keep: int, corrupt: bool = False) -> None:
        self._raw = raw
        self._keep = keep
        self._corrupt = corrupt

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def stream(self, amt: int, decode_content: bool | None = None) -> Iterator[bytes]:
        sent = 0
        for chunk in self._raw.stream(amt, decode_content=decode_content):
            chunk = chunk[:self._keep - sent]
            sent += len(chunk)
            if chunk:
                yield bytes(b ^ 0xFF for b in chunk) if self._corrupt else chunk
            if sent >= self._keep:
                raise urllib3.exceptions.ProtocolError("Connection broken: injected")


def is_object_request(url: str) -> bool:
    """Requests about objects (metadata, media, uploads); google-cloud-storage also fetches bucket
    metadata in a background thread (for tracing attributes), which the fault scripts leave alone."""
    return "/o/" in url or "/o?" in url


@pytest.fixture
def storage(gcs_emulator: GCSEmulator) -> Iterator[Storage]:
    with emulated(gcs_emulator) as s:
        yield s


@pytest.fixture
def sandbox_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's default temp folder, redirected so tests can assert nothing was left in it."""
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- URIs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("uri, bucket, name", [
    ("gs://my-bucket/in.mp4", "my-bucket", "in.mp4"),
    ("gs://b_1.example.com/users/42/video 1.mp4", "b_1.example.com", "users/42/video 1.mp4"),
    ("gs://abc/데이터/안녕.mp4", "abc", "데이터/안녕.mp4"),
    ("gs://abc/a?b#c", "abc", "a?b#c"),  # literal characters, as gsutil reads them
])
def test_parse_gs_ok(uri: str, bucket: str, name: str) -> None:
    loc = parse_uri(uri, local_root=None)
    assert loc == GcsUri(bucket, name)
    assert str(loc) == uri


@pytest.mark.parametrize("uri, fragment", [
    ("", "empty"),
    ("/data/in.mp4", "unsupported"),
    ("s3://bucket/in.mp4", "unsupported"),
    ("GS://bucket/in.mp4", "unsupported"),
    ("gs://", "no bucket"),
    ("gs:///in.mp4", "no bucket"),
    ("gs://bucket", "names a bucket"),
    ("gs://bucket/", "names a bucket"),
    ("gs://Bucket/in.mp4", "lower-case"),
    ("gs://ab/in.mp4", "3 to 63"),
    ("gs://" + "a" * 64 + "/in.mp4", "3 to 63"),
    ("gs://-bucket/in.mp4", "start and end"),
    ("gs://buck et/in.mp4", "lower-case"),
    ("gs://a..b/in.mp4", "dot-separated"),
    ("gs://192.168.0.1/in.mp4", "IP address"),
    ("gs://googbucket/in.mp4", "goog"),
    ("gs://my-google-bucket/in.mp4", "goog"),
    ("gs://bucket/dir/", "folder"),
    ("gs://bucket/a\nb.mp4", "control"),
    ("gs://bucket/..", "'.' or '..'"),
    ("gs://bucket/" + "x" * 1025, "1024 bytes"),
])
def test_parse_gs_bad(uri: str, fragment: str) -> None:
    with pytest.raises(BadURIError) as err:
        parse_uri(uri, local_root=None)
    assert fragment in str(err.value)
    assert isinstance(err.value, BadInputError) and err.value.code == "invalid_request"


def local_path(uri: str, root: Path) -> Path:
    loc = parse_uri(uri, local_root=root)
    assert isinstance(loc, LocalUri)
    return loc.path


def test_parse_file_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    uri = f"file://{root}/sub/in.mp4"
    assert parse_uri(uri, local_root=root) == LocalUri(root / "sub" / "in.mp4", uri)
    assert local_path(f"file://localhost{root}/a.mp4", root) == root / "a.mp4"
    # percent-encoding is decoded (Path.as_uri() output round-trips)
    assert local_path((root / "my video.mp4").as_uri(), root) == root / "my video.mp4"
    # '..' that stays inside the root is fine
    assert local_path(f"file://{root}/sub/../a.mp4", root) == root / "a.mp4"


def test_file_refused_without_root() -> None:
    with pytest.raises(BadURIError, match="LOCAL_STORAGE_ROOT"):
        parse_uri("file:///tmp/in.mp4", local_root=None)


@pytest.mark.parametrize("make_uri", [
    lambda root: "file:///root/../etc/passwd",
    lambda root: f"file://{root}/../etc/passwd",
    lambda root: f"file://{root}/%2e%2e/%2e%2e/etc/passwd",
    lambda root: "file:///etc/passwd",
    lambda root: f"file://{root.parent}/other/in.mp4",
    lambda root: f"file://{root}-sibling/in.mp4",  # a prefix of the root's name is not inside it
    lambda root: f"file://{root}/escape/passwd",  # through a symlink to /etc
    lambda root: f"file://{root}/dangling.mp4",  # a dangling symlink pointing outside
])
def test_file_outside_root_refused(tmp_path: Path, make_uri: Callable[[Path], str]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to("/etc")
    (root / "dangling.mp4").symlink_to(tmp_path / "elsewhere" / "x.mp4")
    with pytest.raises(BadURIError, match="outside LOCAL_STORAGE_ROOT"):
        parse_uri(make_uri(root), local_root=root)


@pytest.mark.parametrize("uri, fragment", [
    ("file://relative/in.mp4", "absolute"),
    ("file://host/data/in.mp4", "absolute"),
    ("file:///data/%00x", "NUL"),
    ("file:///data/%ff", "UTF-8"),
])
def test_file_malformed(tmp_path: Path, uri: str, fragment: str) -> None:
    with pytest.raises(BadURIError, match=fragment):
        parse_uri(uri, local_root=tmp_path)


def test_storage_rejects_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an existing directory"):
        Storage(local_root=tmp_path / "missing")


# -- file:// ---------------------------------------------------------------------------------------

@pytest.fixture
def local(tmp_path: Path) -> Storage:
    root = tmp_path / "root"
    root.mkdir()
    return Storage(local_root=root, max_download_bytes=1000)


def test_local_stat_hash_and_download(local: Storage, tmp_path: Path) -> None:
    assert local.local_root is not None
    src = local.local_root / "in.mp4"
    src.write_bytes(b"a" * 100)
    uri = src.as_uri()
    info = local.stat(uri)
    assert info.size == 100 and info.content_type == "video/mp4"
    assert info.generation.startswith("sha256:") and local.stat(uri) == info
    src.write_bytes(b"b" * 100)
    changed = local.stat(uri)
    assert changed.generation != info.generation

    dest_dir = tmp_path / "req"
    dest_dir.mkdir()
    with pytest.raises(ObjectChangedError):
        local.download(uri, dest_dir, info=info)
    assert listing(dest_dir) == []
    path = local.download(uri, dest_dir, info=changed)
    assert path == dest_dir / "in.mp4" and path.read_bytes() == b"b" * 100


def test_local_errors(local: Storage, tmp_path: Path) -> None:
    assert local.local_root is not None
    dest_dir = tmp_path / "req"
    dest_dir.mkdir()
    with pytest.raises(ObjectNotFoundError, match="does not exist"):
        local.stat(f"file://{local.local_root}/missing.mp4")
    big = local.local_root / "big.mp4"
    big.write_bytes(b"x" * 1001)
    with pytest.raises(InputTooLargeError, match="MAX_DOWNLOAD_BYTES"):
        local.download(big.as_uri(), dest_dir)
    with pytest.raises(BadURIError, match="not a regular file"):
        (local.local_root / "folder").mkdir()
        local.stat(f"file://{local.local_root}/folder")
    assert listing(dest_dir) == []


def test_local_upload_atomic_and_overwrite(tmp_path: Path, sandbox_tmp: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    src = tmp_path / "render.mp4"
    src.write_bytes(b"new" * 1000)
    uri = f"file://{root}/out/result.mp4"

    refuse = Storage(local_root=root, overwrite=False)
    info = refuse.upload(src, uri)
    assert (root / "out" / "result.mp4").read_bytes() == src.read_bytes()
    assert info.size == 3000 and info.generation == refuse.stat(uri).generation
    assert oct((root / "out" / "result.mp4").stat().st_mode & 0o777) == oct(0o644)

    src.write_bytes(b"newer")
    with pytest.raises(OutputExistsError, match="OVERWRITE_OUTPUT"):
        refuse.upload(src, uri)
    assert (root / "out" / "result.mp4").read_bytes() == b"new" * 1000

    Storage(local_root=root, overwrite=True).upload(src, uri)
    assert (root / "out" / "result.mp4").read_bytes() == b"newer"
    assert listing(root) == ["out", "out/result.mp4"]  # no temp files next to the output
    assert listing(sandbox_tmp) == []


def test_local_upload_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir()
    src = tmp_path / "render.mp4"
    src.write_bytes(b"x" * 10)

    def broken_replace(a: object, b: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match="No space left"):
        Storage(local_root=root, overwrite=True).upload(src, f"file://{root}/out.mp4")
    assert listing(root) == []


def test_local_upload_through_escaping_symlink_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "out.mp4").symlink_to(tmp_path / "victim.mp4")
    src = tmp_path / "render.mp4"
    src.write_bytes(b"x")
    with pytest.raises(BadURIError, match="outside LOCAL_STORAGE_ROOT"):
        Storage(local_root=root, overwrite=True).upload(src, f"file://{root}/out.mp4")
    assert not (tmp_path / "victim.mp4").exists()


# -- gs:// on the emulator -------------------------------------------------------------------------

def test_gcs_round_trip(storage: Storage, gcs_bucket: EmulatorBucket, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    generation = gcs_bucket.put("users/1/in.mp4", payload, "video/mp4")
    info = storage.stat(gcs_bucket.uri("users/1/in.mp4"))
    assert info == ObjectInfo(gcs_bucket.uri("users/1/in.mp4"), 300_000, generation, "video/mp4",
                              info.md5, info.crc32c)
    assert info.md5 and info.crc32c

    dest_dir = tmp_path / "req"
    dest_dir.mkdir()
    path = storage.download(gcs_bucket.uri("users/1/in.mp4"), dest_dir)
    assert path == dest_dir / "in.mp4" and path.read_bytes() == payload
    assert listing(dest_dir) == ["in.mp4"]

    out = storage.upload(path, gcs_bucket.uri("users/1/out.mp4"))
    assert gcs_bucket.read("users/1/out.mp4") == payload
    meta = gcs_bucket.metadata("users/1/out.mp4")
    assert meta is not None and meta["contentType"] == "video/mp4"
    assert out.content_type == "video/mp4" and out.size == 300_000 and out.generation == str(meta["generation"])
    assert storage.exists(gcs_bucket.uri("users/1/out.mp4"))
    assert storage.delete(gcs_bucket.uri("users/1/out.mp4"))
    assert not storage.exists(gcs_bucket.uri("users/1/out.mp4"))
    assert not storage.delete(gcs_bucket.uri("users/1/out.mp4"))


def test_gcs_concurrent_round_trips(storage: Storage, gcs_bucket: EmulatorBucket, tmp_path: Path) -> None:
    payloads = {f"in{i}.mp4": os.urandom(50_000 + i) for i in range(8)}
    for name, data in payloads.items():
        gcs_bucket.put(name, data)

    def round_trip(name: str) -> bytes:
        dest_dir = tmp_path / name.removesuffix(".mp4")
        dest_dir.mkdir()
        path = storage.download(gcs_bucket.uri(name), dest_dir)
        storage.upload(path, gcs_bucket.uri(f"out/{name}"))
        return path.read_bytes()

    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(payloads, pool.map(round_trip, payloads), strict=True))
    assert results == payloads
    assert all(gcs_bucket.read(f"out/{name}") == data for name, data in payloads.items())


def test_gcs_generation_changes_when_replaced(storage: Storage, gcs_bucket: EmulatorBucket, tmp_path: Path) -> None:
    uri = gcs_bucket.uri("in.mp4")
    gcs_bucket.put("in.mp4", b"first")
    first = storage.stat(uri)
    gcs_bucket.put("in.mp4", b"second")
    second = storage.stat(uri)
    assert first.generation != second.generation

    dest_dir = tmp_path / "req"
    dest_dir.mkdir()
    # the caller keyed its caches by `first`: it must not silently get the new bytes
    with pytest.raises(ObjectChangedError, match="replaced"):
        storage.download(uri, dest_dir, info=first)
    assert listing(dest_dir) == []
    assert storage.download(uri, dest_dir, info=second).read_bytes() == b"second"


def test_gcs_missing_object_and_bucket(storage: Storage, gcs_bucket: EmulatorBucket, tmp_path: Path) -> None:
    uri = gcs_bucket.uri("missing.mp4")
    with pytest.raises(ObjectNotFoundError, match="no such object") as err:
        storage.download(uri, tmp_path)
    assert uri in str(err.value) and err.value.code == "not_found"

    with pytest.raises(BucketNotFoundError, match="bucket 'no-such-bucket-x1' does not exist") as err2:
        storage.stat("gs://no-such-bucket-x1/in.mp4")
    assert isinstance(err2.value, ObjectNotFoundError)

    src = tmp_path / "out.mp4"
    src.write_bytes(b"x")
    with pytest.raises(BucketNotFoundError, match="does not exist"):
        storage.upload(src, "gs://no-such-bucket-x1/out.mp4")
    assert listing(tmp_path) == ["out.mp4"]


def test_gcs_size_limit(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket, tmp_path: Path) -> None:
    gcs_bucket.put("big.mp4", b"x" * 5000)
    uri = gcs_bucket.uri("big.mp4")
    with emulated(gcs_emulator, max_download_bytes=4096) as limited:
        with pytest.raises(InputTooLargeError, match="over the download limit"):
            limited.download(uri, tmp_path)  # refused from the metadata, nothing transferred
        # metadata that under-reports the size: the stream itself is cut at the limit
        lying = ObjectInfo(uri, 100, limited.stat(uri).generation)
        with pytest.raises(InputTooLargeError):
            limited.download(uri, tmp_path, info=lying)
    assert listing(tmp_path) == []


def test_gcs_upload_refuses_or_replaces_existing(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                                 tmp_path: Path) -> None:
    small, large = tmp_path / "small.mp4", tmp_path / "large.mp4"
    small.write_bytes(b"s" * 1000)
    large.write_bytes(b"L" * (9 * MiB))  # over 8 MiB: a resumable upload
    gcs_bucket.put("out.mp4", b"original")
    gcs_bucket.put("out-large.mp4", b"original")
    refuse = emulated(gcs_emulator, overwrite=False, upload_chunk_bytes=4 * MiB)
    for src, name in [(small, "out.mp4"), (large, "out-large.mp4")]:
        with pytest.raises(OutputExistsError, match="already exists") as err:
            refuse.upload(src, gcs_bucket.uri(name))
        assert err.value.code == "output_exists"
        assert gcs_bucket.read(name) == b"original"

    replace = emulated(gcs_emulator, overwrite=True, upload_chunk_bytes=4 * MiB)
    for src, name in [(small, "out.mp4"), (large, "out-large.mp4")]:
        replace.upload(src, gcs_bucket.uri(name))
        assert gcs_bucket.read(name) == src.read_bytes()


def test_gcs_upload_precondition_is_sent(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                        tmp_path: Path) -> None:
    """The server-side guard, not only the up-front check: an object that appears after the
    check is still not replaced."""
    src = tmp_path / "out.mp4"
    src.write_bytes(b"mine")

    def script(n: int, method: str, url: str, send: Send) -> requests.Response:
        if is_upload(method, url):
            gcs_bucket.put("out.mp4", b"someone else's")  # lands between our check and our upload
            assert "ifGenerationMatch=0" in url
        return send()

    with emulated(gcs_emulator, http=ScriptedSession(script)) as s:
        with pytest.raises(OutputExistsError):
            s.upload(src, gcs_bucket.uri("out.mp4"))
    assert gcs_bucket.read("out.mp4") == b"someone else's"


def test_gcs_env_var_selects_emulator(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    gcs_bucket.put("in.mp4", b"x")
    for value in (gcs_emulator.url, gcs_emulator.host):  # with and without the scheme
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", value)
        with Storage(retries=2, backoff_initial_s=0.01, timeout_s=5.0) as s:
            assert s.emulator_endpoint == gcs_emulator.url
            assert s.stat(gcs_bucket.uri("in.mp4")).size == 1
    # an explicit argument wins over the environment
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1")
    with emulated(gcs_emulator) as s:
        assert s.exists(gcs_bucket.uri("in.mp4"))


def test_gcs_access_denied(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket, tmp_path: Path) -> None:
    session = ScriptedSession(lambda n, method, url, send: fake_response(403, method, url))
    with emulated(gcs_emulator, http=session) as s:
        with pytest.raises(StorageAccessDeniedError, match="access denied") as err:
            s.download(gcs_bucket.uri("in.mp4"), tmp_path)
    assert err.value.code == "storage_denied"
    assert len([u for _, u in session.calls if is_object_request(u)]) == 1  # not retried


def test_gcs_retries_transient_errors(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                      tmp_path: Path) -> None:
    gcs_bucket.put("in.mp4", b"payload")
    src = tmp_path / "out.mp4"
    src.write_bytes(b"rendered")
    seen = {"requests": 0, "failures": 0}

    def flaky(n: int, method: str, url: str, send: Send) -> requests.Response:
        if not is_object_request(url):
            return send()
        seen["requests"] += 1
        if seen["requests"] % 2 == 1:  # every other object request: 503, then 429, ...
            seen["failures"] += 1
            return fake_response(503 if seen["failures"] % 2 else 429, method, url)
        return send()

    dest_dir = tmp_path / "req"
    dest_dir.mkdir()
    with emulated(gcs_emulator, http=ScriptedSession(flaky)) as s:
        assert s.download(gcs_bucket.uri("in.mp4"), dest_dir).read_bytes() == b"payload"
        s.upload(src, gcs_bucket.uri("out.mp4"))
    assert gcs_bucket.read("out.mp4") == b"rendered"
    assert seen["failures"] >= 3
    assert listing(dest_dir) == ["in.mp4"]


def test_gcs_retry_survives_a_short_outage(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                           tmp_path: Path) -> None:
    src = tmp_path / "out.mp4"
    src.write_bytes(b"rendered")

    uploads = {"n": 0}

    def outage(n: int, method: str, url: str, send: Send) -> requests.Response:
        if is_upload(method, url):
            uploads["n"] += 1
            if uploads["n"] == 1:
                gcs_emulator.stop()  # the first attempt meets a refused connection...
            elif uploads["n"] == 2:
                gcs_emulator.start()  # ...and the retry finds it back
        return send()

    with emulated(gcs_emulator, http=ScriptedSession(outage), overwrite=True) as s:
        s.upload(src, gcs_bucket.uri("out.mp4"))
    assert gcs_bucket.read("out.mp4") == b"rendered"


def test_gcs_upload_lost_reply_is_not_a_conflict(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                                 tmp_path: Path) -> None:
    """The upload finished on the server but its reply was lost: the retry's 412 is our own object."""
    src = tmp_path / "out.mp4"
    src.write_bytes(b"rendered")
    uploads = {"n": 0}

    def lose_first_reply(n: int, method: str, url: str, send: Send) -> requests.Response:
        response = send()
        if is_upload(method, url):
            uploads["n"] += 1
            if uploads["n"] == 1:
                raise requests.ConnectionError("connection reset before the reply was read")
        return response

    with emulated(gcs_emulator, http=ScriptedSession(lose_first_reply), overwrite=False) as s:
        info = s.upload(src, gcs_bucket.uri("out.mp4"))
    assert uploads["n"] == 2 and info.size == len(b"rendered")
    assert gcs_bucket.read("out.mp4") == b"rendered"


def test_gcs_emulator_down_upload_and_download(storage: Storage, gcs_emulator: GCSEmulator,
                                               gcs_bucket: EmulatorBucket, tmp_path: Path,
                                               sandbox_tmp: Path) -> None:
    gcs_bucket.put("in.mp4", b"payload")
    src = tmp_path / "out.mp4"
    src.write_bytes(b"rendered")
    dest_dir = tmp_path / "req"
    dest_dir.mkdir()
    gcs_emulator.stop()
    with pytest.raises(StorageUnavailableError, match="unavailable") as err:
        storage.upload(src, gcs_bucket.uri("out.mp4"))
    assert err.value.code == "storage_unavailable" and "3 attempts" in str(err.value)
    assert "Connection refused" in str(err.value)
    with pytest.raises(StorageUnavailableError):
        storage.download(gcs_bucket.uri("in.mp4"), dest_dir)
    gcs_emulator.start()
    assert not gcs_bucket.exists("out.mp4")
    assert gcs_bucket.names() == ["in.mp4"]
    assert listing(dest_dir) == [] and listing(sandbox_tmp) == []


def test_gcs_emulator_stops_between_retries(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                            tmp_path: Path) -> None:
    src = tmp_path / "out.mp4"
    src.write_bytes(b"rendered")

    def fail_then_die(n: int, method: str, url: str, send: Send) -> requests.Response:
        if is_upload(method, url) and gcs_emulator.running:
            gcs_emulator.stop()  # the first attempt gets a 503, every retry a refused connection
            return fake_response(503, method, url)
        return send()

    with emulated(gcs_emulator, http=ScriptedSession(fail_then_die), overwrite=True) as s:
        with pytest.raises(StorageUnavailableError):
            s.upload(src, gcs_bucket.uri("out.mp4"))
    gcs_emulator.start()
    assert not gcs_bucket.exists("out.mp4")


def test_gcs_emulator_dies_mid_resumable_upload(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                                tmp_path: Path) -> None:
    """Half of a 9 MiB resumable upload reaches the server, then the server goes away: no object
    (partial or complete) exists afterwards."""
    src = tmp_path / "out.mp4"
    src.write_bytes(os.urandom(9 * MiB))
    chunks = {"n": 0}

    def die_after_two_chunks(n: int, method: str, url: str, send: Send) -> requests.Response:
        response = send()
        if method == "PUT" and "upload_id=" in url:
            chunks["n"] += 1
            if chunks["n"] == 2:
                gcs_emulator.stop()
        return response

    with emulated(gcs_emulator, http=ScriptedSession(die_after_two_chunks), overwrite=True,
                  upload_chunk_bytes=2 * MiB) as s:
        with pytest.raises(StorageUnavailableError):
            s.upload(src, gcs_bucket.uri("out.mp4"))
    assert chunks["n"] == 2
    gcs_emulator.start()
    assert not gcs_bucket.exists("out.mp4")
    assert gcs_bucket.names() == []


def test_gcs_download_cut_mid_body_resumes(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                           tmp_path: Path) -> None:
    """A dropped connection mid-download: the retry asks only for the missing bytes."""
    payload = os.urandom(300_000)
    gcs_bucket.put("in.mp4", payload)
    reads = {"n": 0}

    def cut_first_read(n: int, method: str, url: str, send: Send) -> requests.Response:
        response = send()
        if is_media_read(method, url):
            reads["n"] += 1
            if reads["n"] == 1:
                response.raw = CutBody(response.raw, keep=100_000)
        return response

    session = ScriptedSession(cut_first_read)
    with emulated(gcs_emulator, http=session) as s:
        assert s.download(gcs_bucket.uri("in.mp4"), tmp_path).read_bytes() == payload
    media = [h for (m, u), h in zip(session.calls, session.sent_headers, strict=True) if is_media_read(m, u)]
    assert len(media) == 2 and "range" not in {k.lower() for k in media[0]}
    assert {k.lower(): v for k, v in media[1].items()}["range"] == "bytes=100000-"
    assert listing(tmp_path) == ["in.mp4"]


def test_gcs_resumed_download_is_checked(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                         tmp_path: Path) -> None:
    """Bytes damaged before a resume do not match the object's CRC32C: the download starts over."""
    payload = os.urandom(300_000)
    gcs_bucket.put("in.mp4", payload)
    reads = {"n": 0}

    def corrupt_then_cut(n: int, method: str, url: str, send: Send) -> requests.Response:
        response = send()
        if is_media_read(method, url):
            reads["n"] += 1
            if reads["n"] == 1:
                response.raw = CutBody(response.raw, keep=100_000, corrupt=True)
        return response

    with emulated(gcs_emulator, http=ScriptedSession(corrupt_then_cut)) as s:
        assert s.download(gcs_bucket.uri("in.mp4"), tmp_path).read_bytes() == payload
    assert reads["n"] == 3  # cut, resumed (and found corrupt), whole again
    assert listing(tmp_path) == ["in.mp4"]


def test_gcs_resumable_chunk_retried_in_place(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                              tmp_path: Path) -> None:
    """A 503 on one chunk resends that chunk to the same session, not the whole file."""
    src = tmp_path / "out.mp4"
    src.write_bytes(os.urandom(9 * MiB))
    chunks = {"n": 0}

    def fail_second_chunk(n: int, method: str, url: str, send: Send) -> requests.Response:
        if is_chunk(method, url):
            chunks["n"] += 1
            if chunks["n"] == 2:
                return fake_response(503, method, url)
        return send()

    session = ScriptedSession(fail_second_chunk)
    with emulated(gcs_emulator, http=session, overwrite=True, upload_chunk_bytes=4 * MiB) as s:
        s.upload(src, gcs_bucket.uri("out.mp4"))
    assert gcs_bucket.read("out.mp4") == src.read_bytes()
    assert len([c for c in session.calls if is_session_start(*c)]) == 1
    assert chunks["n"] == 4  # 4 + 4 + 1 MiB, the second chunk twice


def test_gcs_lost_upload_session_starts_over(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                             tmp_path: Path) -> None:
    """A 410 on the session URL (the session expired): a new session uploads the whole file."""
    src = tmp_path / "out.mp4"
    src.write_bytes(os.urandom(9 * MiB))
    chunks = {"n": 0}

    def expire_session(n: int, method: str, url: str, send: Send) -> requests.Response:
        if is_chunk(method, url):
            chunks["n"] += 1
            if chunks["n"] == 2:
                return fake_response(410, method, url)
        return send()

    session = ScriptedSession(expire_session)
    with emulated(gcs_emulator, http=session, overwrite=True, upload_chunk_bytes=4 * MiB) as s:
        s.upload(src, gcs_bucket.uri("out.mp4"))
    assert gcs_bucket.read("out.mp4") == src.read_bytes()
    assert len([c for c in session.calls if is_session_start(*c)]) == 2
    assert chunks["n"] == 2 + 3  # two chunks to the lost session, then 4 + 4 + 1 MiB


def test_gcs_attempts_are_counted_per_operation(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                                tmp_path: Path) -> None:
    """``retries`` bounds an operation as a whole, however many requests it makes: three chunks
    failing once each use up 3 attempts."""
    src = tmp_path / "out.mp4"
    src.write_bytes(os.urandom(9 * MiB))
    chunks = {"n": 0}

    def fail_each_new_chunk(n: int, method: str, url: str, send: Send) -> requests.Response:
        if is_chunk(method, url):
            chunks["n"] += 1
            if chunks["n"] % 2 == 1:  # every chunk fails once, then goes through
                return fake_response(503, method, url)
        return send()

    with emulated(gcs_emulator, http=ScriptedSession(fail_each_new_chunk), overwrite=True,
                  upload_chunk_bytes=4 * MiB) as s:
        with pytest.raises(StorageUnavailableError, match="after 3 attempts"):
            s.upload(src, gcs_bucket.uri("out.mp4"))
    assert chunks["n"] == 5  # 4 + 4 + 1 MiB: the first two chunks twice, the last once, no retry left
    assert not gcs_bucket.exists("out.mp4")
