"""deploy/grafana/lipsync.json: valid JSON whose PromQL names only metrics the running app exports."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from service.settings import Settings

from .gcs_emulator import GCSEmulator

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "lipsync.json"
METRIC = re.compile(r"\blipsync_[a-z_]+")
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")
# exported only where the process has initialised CUDA; the test checks its definition instead
GPU_GAUGE = "lipsync_gpu_memory_bytes"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The graph panels, rows' nested panels included."""
    out = []
    for p in dashboard["panels"]:
        out += p.get("panels", []) if p["type"] == "row" else [p]
    return out


def _queried(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """Metric base names (histogram series suffixes stripped) -> titles of the panels naming them;
    the template variables' queries count as panels named after the variable."""
    exprs = [(p["title"], t["expr"]) for p in _panels(dashboard) for t in p["targets"]]
    exprs += [(f"${v['name']}", v["definition"]) for v in dashboard["templating"]["list"] if v["type"] == "query"]
    names: dict[str, set[str]] = {}
    for title, expr in exprs:
        for name in METRIC.findall(expr):
            names.setdefault(HISTOGRAM_SERIES.sub("", name), set()).add(title)
    return names


@pytest.fixture(scope="module")
def exported(weights_dir: Path, gcs_emulator: GCSEmulator, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Names in the app's ``/metrics`` after a few requests: every ``# TYPE`` line's name (the base
    name of histograms and counters) and every sample's name."""
    tmp = tmp_path_factory.mktemp("grafana")
    (tmp / "local").mkdir()
    settings = Settings(weights_dir=weights_dir, device="cpu", storage_emulator_host=gcs_emulator.host,  # type: ignore[call-arg]
                        local_storage_root=tmp / "local", work_dir=tmp / "work", tts_cache_dir=tmp / "tts",
                        resize_factor=1, max_waiting_requests=8, overwrite_output=True, preload_models=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/api/v1/jobs/no-such-job").status_code == 404  # an error answer, counted by code
        client.get("/metrics")
        text = client.get("/metrics").text
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    names |= {line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")}
    return names


def test_dashboard_is_grafana_json_with_prometheus_panels(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36 and dashboard["title"] and dashboard["uid"]
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = _panels(dashboard)
    assert len(panels) >= 8
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
    ids = [p["id"] for p in dashboard["panels"]] + [p["id"] for p in panels if p not in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_covers_every_render_metric(dashboard: dict[str, Any]) -> None:
    queried = _queried(dashboard)
    for name in ("lipsync_step_seconds", "lipsync_http_request_duration_seconds", "lipsync_job_queue_depth",
                 "lipsync_jobs", "lipsync_cache_lookups_total", "lipsync_http_errors_total",
                 "lipsync_webhook_deliveries_total", "lipsync_requests_total", GPU_GAUGE):
        assert name in queried, f"no panel queries {name}"
    quantiles = " ".join(t["expr"] for p in _panels(dashboard) for t in p["targets"]
                         if "lipsync_step_seconds_bucket" in t["expr"])
    assert "histogram_quantile(0.5," in quantiles and "histogram_quantile(0.95," in quantiles
    assert "by (le, step)" in quantiles


def test_every_queried_metric_is_exported(dashboard: dict[str, Any], exported: set[str]) -> None:
    assert "lipsync_step_seconds" in exported  # the scrape parsed as expected
    missing = {name: titles for name, titles in _queried(dashboard).items()
               if name not in exported and name != GPU_GAUGE}
    assert not missing, f"panels query metrics the app does not export: {missing}"


def test_gpu_gauge_is_the_one_api_metrics_defines(dashboard: dict[str, Any]) -> None:
    assert GPU_GAUGE in _queried(dashboard)
    assert f'"{GPU_GAUGE}"' in (ROOT / "api" / "metrics.py").read_text()
