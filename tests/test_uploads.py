"""POST /api/v1/uploads, GET /api/v1/jobs/{job_id}/video's refusals and GET / (the page):
real app, real GCS emulator, real media checks; no models are loaded."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from service.media import VideoWriter
from service.settings import Settings
from service.storage.errors import BadURIError

from .gcs_emulator import EmulatorBucket, GCSEmulator

SAMPLE = Path(__file__).resolve().parent.parent / "dev" / "gcs-seed" / "lipsync-dev" / "user.mp4"
KEY = "page-test-key-0123456789"


def _settings(weights_dir: Path, emulator: GCSEmulator, tmp: Path, **over: object) -> Settings:
    local = tmp / "local"
    local.mkdir(exist_ok=True)
    base = dict(weights_dir=weights_dir, device="cpu", storage_emulator_host=emulator.host,
                local_storage_root=local, work_dir=tmp / "work", tts_cache_dir=tmp / "tts",
                preload_models=False, overwrite_output=True)
    return Settings(**{**base, **over})  # type: ignore[arg-type]


@pytest.fixture
def client(weights_dir: Path, gcs_emulator: GCSEmulator, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(weights_dir, gcs_emulator, tmp_path))) as c:
        yield c


def _upload(client: TestClient, data: bytes, name: str = "../my clip.mp4", **headers: str):  # noqa: ANN202
    return client.post("/api/v1/uploads", files={"file": (name, data, "video/mp4")}, headers=headers)


def _leftovers(tmp: Path) -> list[Path]:
    return [p for p in (tmp / "work").glob("upload-*")] + list((tmp / "local" / "uploads").glob("*"))


def test_upload_stores_a_video_under_a_random_name(client: TestClient, tmp_path: Path) -> None:
    data = SAMPLE.read_bytes()
    r = _upload(client, data)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["size"] == len(data) and body["content_type"] == "video/mp4"
    uri = body["uri"]
    uploads = (tmp_path / "local" / "uploads").resolve()
    assert uri.startswith(f"file://{uploads}/") and "clip" not in uri and ".." not in uri
    stored = Path(uri.removeprefix("file://"))
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert not list((tmp_path / "work").glob("upload-*"))


def test_upload_over_the_limit_is_refused_while_streaming(weights_dir: Path, gcs_emulator: GCSEmulator,
                                                          tmp_path: Path) -> None:
    settings = _settings(weights_dir, gcs_emulator, tmp_path, max_download_bytes=100_000)
    with TestClient(create_app(settings)) as c:
        r = _upload(c, SAMPLE.read_bytes())  # 197 kB: within the envelope allowance, refused by the count
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "input_too_large"
        r = _upload(c, b"\0" * 400_000)  # refused from Content-Length alone
        assert r.status_code == 413 and r.json()["error"]["code"] == "input_too_large"
    assert _leftovers(tmp_path) == []


def test_upload_refuses_what_a_job_could_not_use(client: TestClient, tmp_path: Path) -> None:
    r = _upload(client, b"#EXTM3U\n#EXT-X-VERSION:3\nfile:///etc/passwd\n")
    assert r.status_code == 422 and r.json()["error"]["code"] == "unsupported_media"
    assert "HLS playlist" in r.json()["error"]["message"]
    silent = tmp_path / "silent.mp4"
    with VideoWriter(silent, 160, 120, 25) as w:
        for _ in range(10):
            w.write(np.full((120, 160, 3), 90, np.uint8))
    r = _upload(client, silent.read_bytes())
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_audio"
    assert str(tmp_path) not in r.text  # messages never name a server path
    r = client.post("/api/v1/uploads", files={"other": ("a.mp4", SAMPLE.read_bytes(), "video/mp4")})
    assert r.status_code == 422 and "'file'" in r.json()["error"]["message"]
    assert _leftovers(tmp_path) == []


def test_upload_to_a_gcs_store(weights_dir: Path, gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                               tmp_path: Path) -> None:
    settings = _settings(weights_dir, gcs_emulator, tmp_path, upload_store=f"gs://{gcs_bucket.name}/uploads/")
    with TestClient(create_app(settings)) as c:
        r = _upload(c, SAMPLE.read_bytes())
        assert r.status_code == 201, r.text
        uri = r.json()["uri"]
        assert uri.startswith(f"gs://{gcs_bucket.name}/uploads/") and uri.endswith(".mp4")
        meta = gcs_bucket.metadata(uri.split("/", 3)[3])
        assert meta is not None and int(str(meta["size"])) == SAMPLE.stat().st_size
        assert meta["contentType"] == "video/mp4"


def test_page_and_its_assets(client: TestClient, tmp_path: Path) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    store = (tmp_path / "local" / "uploads").resolve()
    assert f'data-upload-store="file://{store}"' in r.text and 'data-keys="off"' in r.text
    for label in ("video-file", "video-uri", "word", "lang", "engine", "pipeline"):
        assert f'<label for="{label}"' in r.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/index.html").status_code == 404
    assert client.get("/static/..%2Fpage.py").status_code == 404


def test_page_off(weights_dir: Path, gcs_emulator: GCSEmulator, tmp_path: Path) -> None:
    with TestClient(create_app(_settings(weights_dir, gcs_emulator, tmp_path, ui_enabled=False))) as c:
        r = c.get("/")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert c.get("/static/app.js").status_code == 404


def test_keys_on_the_page_asks_the_api_checks(weights_dir: Path, gcs_emulator: GCSEmulator, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"page:{hashlib.sha256(KEY.encode()).hexdigest()}\n")
    with TestClient(create_app(_settings(weights_dir, gcs_emulator, tmp_path, api_keys_file=keys))) as c:
        r = c.get("/")
        assert r.status_code == 200 and 'data-keys="on"' in r.text
        assert _upload(c, SAMPLE.read_bytes()).status_code == 401
        assert c.get("/api/v1/jobs/job_x/video").status_code == 401
        assert _upload(c, SAMPLE.read_bytes(), authorization=f"Bearer {KEY}").status_code == 201
        r = c.get("/api/v1/jobs/job_x/video", headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_default_store_without_local_root_is_readable_by_jobs(weights_dir: Path, gcs_emulator: GCSEmulator,
                                                              tmp_path: Path) -> None:
    """No LOCAL_STORAGE_ROOT: uploads go to $WORK_DIR/uploads and jobs may name exactly that folder."""
    settings = _settings(weights_dir, gcs_emulator, tmp_path, local_storage_root=None, preload_models=False)
    with TestClient(create_app(settings)) as c:
        r = _upload(c, SAMPLE.read_bytes())
        assert r.status_code == 201, r.text
        uri = r.json()["uri"]
        assert uri.startswith("file://") and "/uploads/" in uri
        storage = c.app.state.runtime.storage  # type: ignore[attr-defined]
        assert storage.stat(uri).size == SAMPLE.stat().st_size  # a job can read it
        with pytest.raises(BadURIError):  # and nothing else of the machine
            storage.parse(f"file://{tmp_path}/elsewhere.mp4")
