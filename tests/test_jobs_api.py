"""Jobs over HTTP, end to end: real renders (generated weights), the GCS emulator holding
both the media and the job records (JOB_STORE=gs://...), a real local webhook receiver."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app

from .gcs_emulator import EmulatorBucket, GCSEmulator
from .test_api import _error, _no_temp_files, _settings, _wait_ready, media  # noqa: F401 - fixture

SECRET = "test-webhook-secret-0123456789"
LONG_TEXT = ("This sentence is long on purpose, so that the render is still running when the "
             "cancel arrives, and the job has to stop at its next batch.")


class Receiver:
    """A webhook endpoint on loopback: answers the statuses in ``answers`` in turn (then 200)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/lipsync"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def records_bucket(gcs_emulator: GCSEmulator) -> EmulatorBucket:
    return gcs_emulator.create_bucket()  # type: ignore[return-value]


@pytest.fixture(scope="module")
def client(weights_dir: Path, gcs_emulator: GCSEmulator, records_bucket: EmulatorBucket,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("jobs")
    settings = _settings(weights_dir, gcs_emulator, tmp, job_store=f"gs://{records_bucket.name}/jobs",
                         webhook_secret=SECRET, webhook_allowed_hosts=frozenset({"127.0.0.1"}))
    with TestClient(create_app(settings)) as c:
        _wait_ready(c)
        c.work = tmp / "work"  # type: ignore[attr-defined]
        yield c


def _body(bucket: EmulatorBucket, dst: str, **over: Any) -> dict[str, Any]:
    return {"word": "Hello there, friend.", "user_video_gs": bucket.uri("in.mp4"),
            "output_video_gs": bucket.uri(dst), "tts_lang": "en", **over}


def _until(client: TestClient, job_id: str, done: Any, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = client.get(f"/api/v1/jobs/{job_id}", params={"wait_s": 2}).json()
        if done(record):
            return record
        assert time.monotonic() < deadline, record


def test_submit_follow_and_find_the_result(client: TestClient, gcs_bucket: EmulatorBucket,
                                           records_bucket: EmulatorBucket, media: dict[str, bytes]) -> None:  # noqa: F811
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    r = client.post("/api/v1/jobs", json=_body(gcs_bucket, "job-out.mp4"))
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "queued" and r.headers["Location"] == created["status_url"]
    assert created["status_url"] == f"/api/v1/jobs/{created['job_id']}"
    record = _until(client, created["job_id"], lambda j: j["status"] == "succeeded")
    assert record["attempts"] == 1 and record["served_by"] and record["pipeline"] == "optimized"
    assert record["progress"] == {"step": "done", "fraction": 1.0} and record["error"] is None
    assert record["result"]["output_video_gs"] == gcs_bucket.uri("job-out.mp4")
    assert record["result"]["job_id"] == created["job_id"]
    assert record["result"]["face_detection"]["frames_with_face"] >= 1
    for key in ("created_at", "started_at", "finished_at"):
        assert record[key].endswith("Z") and datetime.fromisoformat(record[key].replace("Z", "+00:00"))
    assert record["request"]["word"] == "Hello there, friend." and record["webhook"] is None
    assert gcs_bucket.exists("job-out.mp4")
    stored = json.loads(records_bucket.read(f"jobs/{created['job_id']}.json") or b"{}")
    assert stored["status"] == "succeeded"  # the record lives in JOB_STORE
    listed = client.get("/api/v1/jobs", params={"status": "succeeded"}).json()["jobs"]
    assert created["job_id"] in [j["job_id"] for j in listed]


def test_the_synchronous_route_is_a_job(client: TestClient, gcs_bucket: EmulatorBucket,
                                        media: dict[str, bytes]) -> None:  # noqa: F811
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    body = client.post("/api/v1/lip-video", json=_body(gcs_bucket, "sync-out.mp4")).json()
    assert body["job_id"] and body["output_video_gs"] == gcs_bucket.uri("sync-out.mp4")
    assert client.get(f"/api/v1/jobs/{body['job_id']}").json()["status"] == "succeeded"


def test_idempotency_key_both_ways(client: TestClient, gcs_bucket: EmulatorBucket,
                                   media: dict[str, bytes]) -> None:  # noqa: F811
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/api/v1/jobs", json=_body(gcs_bucket, "idem.mp4"), headers=headers)
    again = client.post("/api/v1/jobs", json=_body(gcs_bucket, "idem.mp4"), headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["job_id"] == first.json()["job_id"]
    other = client.post("/api/v1/jobs", json=_body(gcs_bucket, "idem-2.mp4"), headers=headers)
    _error(other, 409, "idempotency_conflict")
    _until(client, first.json()["job_id"], lambda j: j["finished_at"] is not None)


def test_checks_run_before_the_202(client: TestClient, gcs_bucket: EmulatorBucket) -> None:
    gcs_bucket.put("in.mp4", b"\x00" * 16, "video/mp4")
    before = len(client.get("/api/v1/jobs", params={"limit": 100}).json()["jobs"])
    _error(client.post("/api/v1/jobs", json=_body(gcs_bucket, "x.mp4") | {"user_video_gs": gcs_bucket.uri("nope.mp4")}),
           404, "not_found")
    _error(client.post("/api/v1/jobs", json=_body(gcs_bucket, "x.mp4", face_box=[9, 1, 0, 5])), 422, "invalid_request")
    assert len(client.get("/api/v1/jobs", params={"limit": 100}).json()["jobs"]) == before
    _error(client.get("/api/v1/jobs/job_" + "f" * 32), 404, "not_found")


def test_cancel_mid_render_leaves_nothing(client: TestClient, gcs_bucket: EmulatorBucket,
                                          media: dict[str, bytes]) -> None:  # noqa: F811
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    job = client.post("/api/v1/jobs", json=_body(gcs_bucket, "canceled.mp4", word=LONG_TEXT)).json()
    _until(client, job["job_id"], lambda j: j["progress"]["step"] == "lipsync" or j["finished_at"])
    r = client.delete(f"/api/v1/jobs/{job['job_id']}")
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.json()
    assert not gcs_bucket.exists("canceled.mp4") and _no_temp_files(client.work)  # type: ignore[attr-defined]
    _error(client.delete(f"/api/v1/jobs/{job['job_id']}"), 409, "job_finished")


def test_webhook_is_signed_and_retried_after_a_500(client: TestClient, gcs_bucket: EmulatorBucket,
                                                   receiver: Receiver, media: dict[str, bytes]) -> None:  # noqa: F811
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    receiver.answers = [500]
    job = client.post("/api/v1/jobs", json=_body(gcs_bucket, "hooked.mp4", webhook_url=receiver.url)).json()
    record = _until(client, job["job_id"], lambda j: j["webhook"] and j["webhook"]["attempts"] >= 2)
    assert record["webhook"] == {"url": receiver.url, "delivered": True, "attempts": 2, "last_status": 200}
    assert len(receiver.calls) == 2
    (h1, _), (headers, body) = receiver.calls
    assert headers["x-lipsync-event"] == "job.succeeded"
    assert headers["x-lipsync-delivery"] == h1["x-lipsync-delivery"]  # one delivery, retried
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-lipsync-signature"], expected)
    sent = json.loads(body)
    assert sent["job_id"] == job["job_id"] and sent["status"] == "succeeded" and "owner" not in sent
    metrics = client.get("/metrics").text
    assert 'lipsync_webhook_deliveries_total{outcome="delivered"}' in metrics
    assert "lipsync_job_queue_depth" in metrics and 'lipsync_jobs{status="succeeded"}' in metrics


@pytest.mark.parametrize("url", ["https://169.254.169.254/latest/meta-data", "http://10.0.0.7/hook",
                                 "https://localhost/hook", "https://metadata.google.internal/x",
                                 "http://example.com/hook"])
def test_webhooks_to_private_places_are_refused(client: TestClient, gcs_bucket: EmulatorBucket, url: str) -> None:
    gcs_bucket.put("in.mp4", b"\x00" * 16, "video/mp4")
    err = _error(client.post("/api/v1/jobs", json=_body(gcs_bucket, "never.mp4", webhook_url=url)), 422,
                 "webhook_not_allowed")
    assert "webhook" in err["message"].lower()
