"""Per-route HTTP metrics on the app's own registry (prometheus-fastapi-instrumentator)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from service.settings import Settings, load_settings

from .gcs_emulator import GCSEmulator


def _settings(emulator: GCSEmulator, tmp: Path) -> Settings:
    return load_settings(weights_dir=tmp / "weights", device="cpu", storage_emulator_host=emulator.host,
                         work_dir=tmp / "work", tts_cache_dir=tmp / "tts", preload_models=False)


def _samples(text: str, name: str) -> list[dict[str, str]]:
    """The label sets of ``name``'s samples in a Prometheus text exposition."""
    return [dict(s.labels) for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name]


@pytest.fixture(scope="module")
def scraped(gcs_emulator: GCSEmulator, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``/metrics`` after a few requests: two probes, two reads of unknown jobs, a stray path."""
    with TestClient(create_app(_settings(gcs_emulator, tmp_path_factory.mktemp("http-metrics")))) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/api/v1/jobs/no-such-job").status_code == 404
        assert client.get("/api/v1/jobs/another-missing-job").status_code == 404
        assert client.get("/not/a/route").status_code == 404
        client.get("/metrics")  # the scrape itself is counted by the next one
        answer = client.get("/metrics")
        assert answer.status_code == 200
        return answer.text


def test_requests_are_counted_per_route_template_and_status(scraped: str) -> None:
    counts = _samples(scraped, "lipsync_http_requests_total")
    assert {"handler": "/health", "method": "GET", "status": "200"} in counts
    # one series for both job ids: the route's template, never the raw path
    assert {"handler": "/api/v1/jobs/{job_id}", "method": "GET", "status": "404"} in counts
    assert {"handler": "none", "method": "GET", "status": "404"} in counts  # unrouted paths share one series
    assert {"handler": "/metrics", "method": "GET", "status": "200"} in counts
    handlers = {c["handler"] for c in counts}
    assert not any("no-such-job" in h or "/not/a/route" in h for h in handlers), handlers
    values = {(s.labels["handler"], s.labels["status"]): s.value
              for f in text_string_to_metric_families(scraped) for s in f.samples
              if s.name == "lipsync_http_requests_total"}
    assert values[("/health", "200")] == 2
    assert values[("/api/v1/jobs/{job_id}", "404")] == 2


def test_latency_is_a_histogram_per_route(scraped: str) -> None:
    buckets = _samples(scraped, "lipsync_http_request_duration_seconds_bucket")
    routes = {(b["handler"], b["status"]) for b in buckets}
    assert ("/health", "200") in routes and ("/api/v1/jobs/{job_id}", "404") in routes
    assert {"handler": "/health", "method": "GET", "status": "200", "le": "+Inf"} in buckets
    assert _samples(scraped, "lipsync_http_request_duration_seconds_count")


def test_the_app_keeps_its_one_metrics_route(gcs_emulator: GCSEmulator, tmp_path: Path) -> None:
    app = create_app(_settings(gcs_emulator, tmp_path))
    metrics_path = app.openapi()["paths"]["/metrics"]
    assert list(metrics_path) == ["get"]
    assert metrics_path["get"]["summary"] == "Prometheus metrics (text exposition format)"  # ours
    # the render metrics are still on the same registry as the HTTP ones
    with TestClient(app) as client:
        text = client.get("/metrics").text
    assert "lipsync_job_queue_depth" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_no_gpu_gauge_without_cuda(scraped: str) -> None:
    assert "lipsync_gpu_memory" not in scraped
