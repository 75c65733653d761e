"""The HTTP API end to end: real GCS emulator, real ffmpeg (PyAV), real espeak-ng, generated
weights. Each failure returns the right status and a JSON error, leaves no output object
and no temp files."""
from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from service.dev.samples import espeak_speech, make_face_video
from service.media import VideoWriter, probe
from service.settings import Settings

from .gcs_emulator import EmulatorBucket, GCSEmulator

WORD = "Hello there, friend."


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("media")
    own_voice = espeak_speech("This is my own voice, recorded for the service.", "en-gb")
    face = make_face_video(d / "user.mp4", 2.0, width=480, height=270, fps=25.0, audio=own_voice)
    blank = d / "blank.mp4"
    with VideoWriter(blank, 320, 240, 25, audio=own_voice) as w:
        for _ in range(25):
            w.write(np.full((240, 320, 3), 60, np.uint8))
    return {"face": face.read_bytes(), "blank": blank.read_bytes()}


def _settings(weights_dir: Path, emulator: GCSEmulator, tmp: Path, **over: object) -> Settings:
    local = tmp / "local"
    local.mkdir(exist_ok=True)
    base = dict(weights_dir=weights_dir, device="cpu", storage_emulator_host=emulator.host,
                local_storage_root=local, work_dir=tmp / "work", tts_cache_dir=tmp / "tts",
                resize_factor=1, max_waiting_requests=8, overwrite_output=True)
    return Settings(**{**base, **over})  # type: ignore[arg-type]


def _wait_ready(client: TestClient, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"not ready: {client.get('/health').json()}")


@pytest.fixture(scope="module")
def api(weights_dir: Path, gcs_emulator: GCSEmulator, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[tuple[TestClient, Path]]:
    tmp = tmp_path_factory.mktemp("api")
    with TestClient(create_app(_settings(weights_dir, gcs_emulator, tmp))) as client:
        _wait_ready(client)
        yield client, tmp


def _body(bucket: EmulatorBucket, src: str = "in.mp4", dst: str = "out.mp4", **over: object) -> dict[str, object]:
    return {"word": WORD, "user_video_gs": bucket.uri(src), "output_video_gs": bucket.uri(dst),
            "tts_lang": "en", **over}


def _no_temp_files(work: Path) -> bool:
    return not [p for p in work.glob("req-*")]


def test_optimized_request_gs_to_gs(api: tuple[TestClient, Path], gcs_bucket: EmulatorBucket,
                                    media: dict[str, bytes], tmp_path: Path) -> None:
    client, tmp = api
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    r = client.post("/api/v1/lip-video-optimized", json=_body(gcs_bucket))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pipeline"] == "optimized" and body["output_video_gs"] == gcs_bucket.uri("out.mp4")
    assert set(body["step_times"]) == {"download", "tts", "voice_conversion", "lipsync", "encode", "upload", "total"}
    assert set(body["cache_hits"]) == {"tts", "speaker_embedding", "face_boxes", "frames"}
    assert gcs_bucket.metadata("out.mp4")["contentType"] == "video/mp4"  # type: ignore[index]
    out = tmp_path / "out.mp4"
    out.write_bytes(gcs_bucket.read("out.mp4") or b"")
    info = probe(out)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert abs(info.duration_s - body["duration_s"]) < 0.1  # type: ignore[operator]
    assert _no_temp_files(tmp / "work")

    # the same input again: every per-input cache and the TTS cache hit
    r2 = client.post("/api/v1/lip-video-optimized", json=_body(gcs_bucket, dst="out2.mp4"))
    assert r2.status_code == 200, r2.text
    assert r2.json()["cache_hits"] == {"tts": True, "speaker_embedding": True, "face_boxes": True, "frames": True}
    metrics = client.get("/metrics").text
    assert 'lipsync_cache_lookups_total{cache="face_boxes",result="hit"}' in metrics
    assert 'lipsync_requests_total{key="-",outcome="ok",pipeline="optimized"}' in metrics


def test_concurrent_requests_all_succeed(api: tuple[TestClient, Path], gcs_bucket: EmulatorBucket,
                                         media: dict[str, bytes]) -> None:
    client, _ = api
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client.post, "/api/v1/lip-video", json=_body(gcs_bucket, dst=f"c{i}.mp4"))
                   for i in range(4)]
        # health stays responsive while renders run
        assert client.get("/health").status_code == 200
        codes = [f.result().status_code for f in futures]
    assert codes == [200] * 4
    assert all(gcs_bucket.exists(f"c{i}.mp4") for i in range(4))


def test_baseline_when_use_optimized_is_false(weights_dir: Path, gcs_emulator: GCSEmulator,
                                              gcs_bucket: EmulatorBucket, media: dict[str, bytes],
                                              tmp_path: Path) -> None:
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    settings = _settings(weights_dir, gcs_emulator, tmp_path, use_optimized=False, preload_models=False)
    with TestClient(create_app(settings)) as client:
        r = client.post("/api/v1/lip-video", json=_body(gcs_bucket))
        assert r.status_code == 200, r.text
        assert r.json()["pipeline"] == "baseline"
        assert not any(r.json()["cache_hits"].values())
        assert client.get("/ready").status_code == 503  # baseline loads per request; nothing preloaded
    assert gcs_bucket.exists("out.mp4")
    assert _no_temp_files(tmp_path / "work")


def _error(r: object, status: int, code: str | None = None) -> dict[str, str]:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    err = r.json()["error"]  # type: ignore[attr-defined]
    assert set(err) == {"code", "message", "request_id"} and err["message"]
    if code:
        assert err["code"] == code, err
    return err


def test_missing_input_object_is_404(api: tuple[TestClient, Path], gcs_bucket: EmulatorBucket) -> None:
    client, tmp = api
    _error(client.post("/api/v1/lip-video", json=_body(gcs_bucket, src="nope.mp4")), 404)
    assert not gcs_bucket.exists("out.mp4") and _no_temp_files(tmp / "work")


def test_missing_bucket_is_404(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    body = {"word": WORD, "user_video_gs": "gs://no-such-bucket-x/in.mp4",
            "output_video_gs": "gs://no-such-bucket-x/out.mp4", "tts_lang": "en"}
    _error(client.post("/api/v1/lip-video", json=body), 404)


def test_non_video_object_is_422(api: tuple[TestClient, Path], gcs_bucket: EmulatorBucket) -> None:
    client, _ = api
    gcs_bucket.put("in.mp4", b"this is not a video", "video/mp4")
    err = _error(client.post("/api/v1/lip-video", json=_body(gcs_bucket)), 422)
    assert "not a video" in err["message"]
    assert not gcs_bucket.exists("out.mp4")


def test_no_face_is_422(api: tuple[TestClient, Path], gcs_bucket: EmulatorBucket, media: dict[str, bytes]) -> None:
    client, tmp = api
    gcs_bucket.put("in.mp4", media["blank"], "video/mp4")
    _error(client.post("/api/v1/lip-video", json=_body(gcs_bucket)), 422, "no_face")
    assert not gcs_bucket.exists("out.mp4") and _no_temp_files(tmp / "work")


@pytest.mark.parametrize("over,fragment", [({"word": ""}, "word"), ({"word": "   "}, "empty"),
                                           ({"tts_lang": "xx"}, "xx")])
def test_bad_text_or_language_is_422(api: tuple[TestClient, Path], gcs_bucket: EmulatorBucket,
                                     media: dict[str, bytes], over: dict[str, str], fragment: str) -> None:
    client, _ = api
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    err = _error(client.post("/api/v1/lip-video", json=_body(gcs_bucket, **over)), 422)
    assert fragment in err["message"]
    assert not gcs_bucket.exists("out.mp4")


def test_file_uri_traversal_is_refused(api: tuple[TestClient, Path]) -> None:
    client, tmp = api
    body = {"word": WORD, "user_video_gs": f"file://{tmp}/local/../../../etc/passwd",
            "output_video_gs": f"file://{tmp}/local/out.mp4", "tts_lang": "en"}
    err = _error(client.post("/api/v1/lip-video", json=body), 422)
    assert "LOCAL_STORAGE_ROOT" in err["message"]
    assert not (tmp / "local" / "out.mp4").exists()


def test_storage_outage_mid_upload_is_503(api: tuple[TestClient, Path], gcs_emulator: GCSEmulator,
                                          gcs_bucket: EmulatorBucket, media: dict[str, bytes],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    client, tmp = api
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    storage = client.app.state.runtime.storage  # type: ignore[attr-defined]
    real_upload = storage.upload

    def upload_during_outage(*args: object, **kwargs: object) -> object:
        gcs_emulator.stop()
        return real_upload(*args, **kwargs)

    monkeypatch.setattr(storage, "upload", upload_during_outage)
    try:
        r = client.post("/api/v1/lip-video", json=_body(gcs_bucket, dst="outage.mp4"))
        _error(r, 503, "storage_unavailable")
        assert "Retry-After" in r.headers
    finally:
        gcs_emulator.start()
    assert not gcs_bucket.exists("outage.mp4") and _no_temp_files(tmp / "work")


def test_server_busy_is_503_with_retry_after(api: tuple[TestClient, Path], gcs_bucket: EmulatorBucket,
                                             media: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = api
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    gate = client.app.state.runtime.gate  # type: ignore[attr-defined]
    monkeypatch.setattr(gate, "max_waiting", 0)
    with gate.slot():  # the device is taken by another render
        r = client.post("/api/v1/lip-video", json=_body(gcs_bucket, dst="busy.mp4"))
    _error(r, 503, "server_busy")
    assert int(r.headers["Retry-After"]) > 0


def test_health_ready_preload_and_cache_endpoints(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["warm"] and h["device"] == "cpu"
    # LIPSYNC_PRECISION/VOICE_PRECISION=auto resolved for this CPU, shown to the operator
    from service.precision import cpu_bf16
    fast = "bf16" if cpu_bf16().native else "fp32"
    assert h["precision"] == {"lipsync": fast, "voice": fast, "baseline": "fp32"}
    assert set(h["models_loaded"]) == {"wav2lip", "wavlm", "freevc", "speaker"}
    assert "en" in str(h["supported_languages"])
    assert client.get("/ready").status_code == 200
    p = client.post("/api/v1/preload-models").json()
    assert p["status"] == "ok" and p["message"] == "Models preloaded successfully"
    stats = client.get("/api/v1/tts/cache/stats").json()
    assert set(stats) >= {"cache_size", "max_cache_size", "hits", "misses", "hit_rate", "total_requests"}
    assert client.post("/api/v1/tts/cache/cleanup").json()["status"] == "ok"
    assert client.delete("/api/v1/tts/cache/clear").json()["status"] == "ok"
    assert client.get("/api/v1/tts/cache/stats").json()["cache_size"] == 0
    assert client.get("/openapi.json").json()["paths"]["/api/v1/lip-video-optimized"]


def test_validation_errors_use_the_error_shape(api: tuple[TestClient, Path]) -> None:
    client, _ = api
    err = _error(client.post("/api/v1/lip-video", json={"word": "hi"}), 422, "invalid_request")
    assert "user_video_gs" in err["message"]
