"""Trustworthy by default, in-process: checks before any work, errors in the caller's terms,
API keys and bucket limits, bad settings stop the start. Real GCS emulator, real media,
generated weights."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from service.dev.samples import face_image
from service.media import VideoWriter
from service.pipelines.common import remove_stale_request_dirs
from service.runtime import ServiceRuntime
from service.settings import Settings, SettingsError, load_settings

from .gcs_emulator import EmulatorBucket, GCSEmulator
from .test_api import _body, _error, _no_temp_files, _settings, _wait_ready, media  # noqa: F401 - fixture

CLIENT_KEY, OPS_KEY = "client-secret-key-1", "ops-secret-key-2"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def bucket(gcs_emulator: GCSEmulator) -> EmulatorBucket:
    return gcs_emulator.create_bucket()  # type: ignore[return-value]


@pytest.fixture(scope="module")
def trusted(weights_dir: Path, gcs_emulator: GCSEmulator, bucket: EmulatorBucket,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    """A service with keys, an admin, one allowed bucket and no overwriting."""
    tmp = tmp_path_factory.mktemp("trusted")
    keys = tmp / "keys.txt"
    keys.write_text(f"# name:sha256\nclient:{_sha(CLIENT_KEY)}\nops:{_sha(OPS_KEY)}\n")
    settings = _settings(weights_dir, gcs_emulator, tmp, api_keys_file=keys, admin_keys=frozenset({"ops"}),
                         allowed_buckets=frozenset({bucket.name}), overwrite_output=False)
    with TestClient(create_app(settings)) as client:
        _wait_ready(client)
        yield client, tmp


def _inputs_seen(client: TestClient) -> int:
    """Inputs downloaded so far (the optimized pipeline's input cache)."""
    return len(client.app.state.runtime.pipeline(True).inputs)  # type: ignore[attr-defined]


def _tts_requests(client: TestClient) -> int:
    return int(client.get("/api/v1/tts/cache/stats", headers=_auth(CLIENT_KEY)).json()["total_requests"])


# ---- keys ------------------------------------------------------------------------------------

def test_routes_need_a_key_but_probes_do_not(trusted: tuple[TestClient, Path], bucket: EmulatorBucket) -> None:
    client, _ = trusted
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    r = client.post("/api/v1/lip-video", json=_body(bucket))
    _error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"] == "Bearer"
    _error(client.post("/api/v1/lip-video", json=_body(bucket), headers=_auth("not-a-key")), 401, "unauthorized")
    _error(client.get("/metrics", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    assert client.get("/metrics", headers=_auth(CLIENT_KEY)).status_code == 200


def test_admin_routes_need_an_admin_key(trusted: tuple[TestClient, Path]) -> None:
    client, _ = trusted
    _error(client.post("/api/v1/preload-models", headers=_auth(CLIENT_KEY)), 403, "forbidden")
    _error(client.delete("/api/v1/tts/cache/clear", headers=_auth(CLIENT_KEY)), 403, "forbidden")
    _error(client.post("/api/v1/tts/cache/cleanup", headers=_auth(CLIENT_KEY)), 403, "forbidden")
    assert client.post("/api/v1/preload-models", headers=_auth(OPS_KEY)).status_code == 200
    assert client.post("/api/v1/tts/cache/cleanup", headers=_auth(OPS_KEY)).status_code == 200


def test_key_names_reach_metrics_and_keys_never_do(trusted: tuple[TestClient, Path], bucket: EmulatorBucket) -> None:
    client, _ = trusted
    client.post("/api/v1/lip-video", json=_body(bucket, src="missing.mp4"), headers=_auth(CLIENT_KEY))
    text = client.get("/metrics", headers=_auth(CLIENT_KEY)).text
    assert 'key="client"' in text
    assert CLIENT_KEY not in text and _sha(CLIENT_KEY) not in text
    assert 'lipsync_http_errors_total{code="unauthorized",status="401"}' in text


def test_bad_keys_file_stops_the_start(tmp_path: Path, weights_dir: Path, gcs_emulator: GCSEmulator) -> None:
    bad = tmp_path / "keys.txt"
    bad.write_text("client:not-a-digest\n")
    with pytest.raises(SettingsError, match="API_KEYS_FILE.*line 1"):
        with TestClient(create_app(_settings(weights_dir, gcs_emulator, tmp_path, api_keys_file=bad))):
            pass
    bad.write_text(f"client:{_sha('k')}\n")
    with pytest.raises(SettingsError, match="ADMIN_KEYS.*ops"):
        with TestClient(create_app(_settings(weights_dir, gcs_emulator, tmp_path, api_keys_file=bad,
                                             admin_keys=frozenset({"ops"})))):
            pass


# ---- buckets and checks before any work -----------------------------------------------------

def test_other_buckets_are_403_before_any_storage_call(trusted: tuple[TestClient, Path],
                                                       bucket: EmulatorBucket) -> None:
    client, tmp = trusted
    # the bucket does not even exist: a 403 (not a 404) proves storage was never asked
    body = _body(bucket, src="in.mp4") | {"user_video_gs": "gs://someone-elses-bucket/in.mp4"}
    err = _error(client.post("/api/v1/lip-video", json=body, headers=_auth(CLIENT_KEY)), 403, "bucket_not_allowed")
    assert "gs://someone-elses-bucket/in.mp4" in err["message"]
    body = _body(bucket) | {"output_video_gs": "gs://someone-elses-bucket/out.mp4"}
    _error(client.post("/api/v1/lip-video", json=body, headers=_auth(CLIENT_KEY)), 403, "bucket_not_allowed")
    assert _no_temp_files(tmp / "work")


def test_existing_output_is_409_before_download(trusted: tuple[TestClient, Path], bucket: EmulatorBucket,
                                                media: dict[str, bytes]) -> None:  # noqa: F811
    client, _ = trusted
    bucket.put("in-409.mp4", media["face"], "video/mp4")
    bucket.put("taken.mp4", b"someone's earlier result", "video/mp4")
    before = _inputs_seen(client)
    r = client.post("/api/v1/lip-video", json=_body(bucket, src="in-409.mp4", dst="taken.mp4"),
                    headers=_auth(CLIENT_KEY))
    err = _error(r, 409, "output_exists")
    assert bucket.uri("taken.mp4") in err["message"]
    assert _inputs_seen(client) == before  # nothing was downloaded
    assert bucket.read("taken.mp4") == b"someone's earlier result"


def test_missing_output_bucket_is_404_before_download(api_open: TestClient, gcs_bucket: EmulatorBucket,
                                                      media: dict[str, bytes]) -> None:  # noqa: F811
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    before = _inputs_seen(api_open)
    body = _body(gcs_bucket) | {"output_video_gs": "gs://no-such-output-bucket/out.mp4"}
    err = _error(api_open.post("/api/v1/lip-video", json=body), 404, "not_found")
    assert "no-such-output-bucket" in err["message"]
    assert _inputs_seen(api_open) == before


@pytest.mark.parametrize("box", [[100, 50, 0, 10], [-1, 10, 0, 10], [0, 10, 30, 30]])
def test_malformed_face_box_is_422_before_download(api_open: TestClient, gcs_bucket: EmulatorBucket,
                                                   media: dict[str, bytes], box: list[int]) -> None:  # noqa: F811
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    before = _inputs_seen(api_open)
    _error(api_open.post("/api/v1/lip-video", json=_body(gcs_bucket, face_box=box)), 422, "invalid_request")
    assert _inputs_seen(api_open) == before and not gcs_bucket.exists("out.mp4")


def test_face_box_outside_the_frame_is_422_before_tts(api_open: TestClient, gcs_bucket: EmulatorBucket,
                                                      media: dict[str, bytes]) -> None:  # noqa: F811
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")  # 480x270 at resize 1
    before = _tts_requests_open(api_open)
    err = _error(api_open.post("/api/v1/lip-video", json=_body(gcs_bucket, face_box=[0, 300, 0, 100])),
                 422, "invalid_request")
    assert "480x270" in err["message"] and "face_box" in err["message"]
    assert _tts_requests_open(api_open) == before  # refused before any speech was made
    assert not gcs_bucket.exists("out.mp4")


def _tts_requests_open(client: TestClient) -> int:
    return int(client.get("/api/v1/tts/cache/stats").json()["total_requests"])


# ---- errors in the caller's terms ------------------------------------------------------------

@pytest.fixture(scope="module")
def api_open(weights_dir: Path, gcs_emulator: GCSEmulator, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("open")
    with TestClient(create_app(_settings(weights_dir, gcs_emulator, tmp))) as client:
        _wait_ready(client)
        client.work = tmp / "work"  # type: ignore[attr-defined]
        yield client


def test_messages_name_the_uri_never_a_server_path(api_open: TestClient, gcs_bucket: EmulatorBucket) -> None:
    gcs_bucket.put("notes.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, "video/mp4")  # a broken mp4
    err = _error(api_open.post("/api/v1/lip-video", json=_body(gcs_bucket, src="notes.mp4")), 422)
    assert gcs_bucket.uri("notes.mp4") in err["message"]
    assert str(api_open.work) not in err["message"] and "/tmp" not in err["message"]  # type: ignore[attr-defined]
    assert _no_temp_files(api_open.work)  # type: ignore[attr-defined]


def test_silent_video_is_no_audio(api_open: TestClient, gcs_bucket: EmulatorBucket, tmp_path: Path) -> None:
    silent = tmp_path / "silent.mp4"
    frame = cv2.resize(face_image(), (320, 180))
    with VideoWriter(silent, 320, 180, 25) as w:
        for _ in range(10):
            w.write(frame)
    gcs_bucket.put("silent.mp4", silent.read_bytes(), "video/mp4")
    err = _error(api_open.post("/api/v1/lip-video", json=_body(gcs_bucket, src="silent.mp4")), 422, "no_audio")
    assert "the user video has no audio track; the voice is cloned from it" in err["message"]


def test_image_as_user_video_asks_for_a_video(api_open: TestClient, gcs_bucket: EmulatorBucket) -> None:
    ok, png = cv2.imencode(".png", cv2.resize(face_image(), (320, 180)))
    gcs_bucket.put("me.png", png.tobytes(), "image/png")
    err = _error(api_open.post("/api/v1/lip-video", json=_body(gcs_bucket, src="me.png")), 422, "unsupported_media")
    assert "still image" in err["message"] and "video" in err["message"]


def test_malformed_json_says_so(api_open: TestClient) -> None:
    r = api_open.post("/api/v1/lip-video", content=b'{"word": "hi",', headers={"content-type": "application/json"})
    err = _error(r, 422, "invalid_request")
    assert err["message"].startswith("the request body is not valid JSON")
    text = api_open.get("/metrics").text
    assert 'lipsync_http_errors_total{code="invalid_request",status="422"}' in text


def test_missing_weights_fail_fast_with_the_reason(tmp_path: Path, gcs_emulator: GCSEmulator,
                                                  gcs_bucket: EmulatorBucket) -> None:
    empty = tmp_path / "no-weights"
    empty.mkdir()
    with TestClient(create_app(_settings(empty, gcs_emulator, tmp_path))) as client:
        for _ in range(100):
            if "WeightsMissingError" in (client.get("/ready").json().get("reason") or ""):
                break
        r = client.post("/api/v1/lip-video", json=_body(gcs_bucket))
        err = _error(r, 503, "models_unavailable")
        assert "missing model weights" in err["message"] and "lipsync weights fetch" in err["message"]
        assert "Retry-After" in r.headers


def test_405_carries_allow(api_open: TestClient) -> None:
    r = api_open.get("/api/v1/lip-video")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert r.json()["error"]["code"] == "method_not_allowed"


# ---- settings and start-up --------------------------------------------------------------------

@pytest.mark.parametrize("var,value", [("RESIZE_FACTOR", "0"), ("MAX_DOWNLOAD_BYTES", "-5"),
                                       ("X264_PRESET", "fastest"), ("SHUTDOWN_GRACE_S", "-1"),
                                       ("TTS_ENGINE", "say")])
def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=f"{var}={value!r}"):
        load_settings()


def test_comma_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_BUCKETS", "in-bucket, out-bucket,")
    monkeypatch.setenv("ADMIN_KEYS", "ops")
    s = load_settings()
    assert s.allowed_buckets == {"in-bucket", "out-bucket"} and s.admin_keys == {"ops"}


def test_start_up_removes_request_folders_of_a_killed_process(tmp_path: Path, weights_dir: Path) -> None:
    work = tmp_path / "work"
    stale = work / "req-0123456789abcdef-x1"
    stale.mkdir(parents=True)
    (stale / ".output.mp4.abc123.part").write_bytes(b"half a video")
    keep = work / "inputs"
    keep.mkdir()
    rt = ServiceRuntime(Settings(weights_dir=weights_dir, work_dir=work, tts_cache_dir=tmp_path / "tts",
                                 preload_models=False, device="cpu"))
    rt.close()
    assert not stale.exists() and keep.exists()
    assert remove_stale_request_dirs(work) == 0
    assert np.all([not p.name.startswith("req-") for p in work.iterdir()])


def test_a_job_belongs_to_the_key_that_made_it(trusted: tuple[TestClient, Path], bucket: EmulatorBucket) -> None:
    client, _ = trusted
    bucket.put("junk.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "video/mp4")  # fails fast, but is a job
    r = client.post("/api/v1/jobs", json=_body(bucket, src="junk.mp4", dst="junk-out.mp4"), headers=_auth(CLIENT_KEY))
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert client.get(f"/api/v1/jobs/{job_id}", headers=_auth(CLIENT_KEY)).status_code == 200
    _error(client.get(f"/api/v1/jobs/{job_id}", headers=_auth(OPS_KEY)), 404, "not_found")
    _error(client.delete(f"/api/v1/jobs/{job_id}", headers=_auth(OPS_KEY)), 404, "not_found")
    assert job_id not in str(client.get("/api/v1/jobs", headers=_auth(OPS_KEY)).json())
    _error(client.get(f"/api/v1/jobs/{job_id}"), 401, "unauthorized")
