"""Prometheus metrics, one registry per app (so tests can build many apps).

Besides the render metrics below, every HTTP answer is counted and timed per route by
prometheus-fastapi-instrumentator (:meth:`Metrics.instrument`):
``lipsync_http_requests_total{handler,method,status}`` and
``lipsync_http_request_duration_seconds{handler,method,status}``, ``handler`` being the route
template (``/api/v1/jobs/{job_id}``; ``none`` for paths no route matches) and ``status`` the
exact code. Where this process has initialised CUDA, ``lipsync_gpu_memory_bytes{device,kind}``
reports PyTorch's allocated and reserved bytes per device, read at scrape time.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as http_metrics

from service.jobs.queue import JobQueue
from service.jobs.records import JobRecord

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300)
# probes and job reads answer in milliseconds; the synchronous lip-video routes wait for a render
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _GpuMemory(Collector):
    """PyTorch's CUDA memory per device, read when Prometheus scrapes. Nothing where this
    process has not initialised CUDA (no GPU, a CPU device, or an ingress that renders
    elsewhere): reading the counters must not create a CUDA context of its own."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
            return
        family = GaugeMetricFamily("lipsync_gpu_memory_bytes", "CUDA memory held by PyTorch in this process: "
                                   "allocated to tensors, and reserved by its caching allocator",
                                   labels=["device", "kind"])
        for i in range(torch.cuda.device_count()):
            family.add_metric([str(i), "allocated"], torch.cuda.memory_allocated(i))
            family.add_metric([str(i), "reserved"], torch.cuda.memory_reserved(i))
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lipsync_requests_total", "lip-video requests by pipeline, outcome and API key "
                                "name ('-' when keys are off)", ["pipeline", "outcome", "key"], registry=self.registry)
        self.steps = Histogram("lipsync_step_seconds", "seconds per pipeline step", ["pipeline", "step"],
                               buckets=_BUCKETS, registry=self.registry)
        self.cache = Counter("lipsync_cache_lookups_total", "cache lookups by cache and result",
                             ["cache", "result"], registry=self.registry)
        self.errors = Counter("lipsync_http_errors_total", "error answers by code and status (validation "
                              "and authentication included)", ["code", "status"], registry=self.registry)
        self.queue_depth = Gauge("lipsync_job_queue_depth", "jobs waiting for the device", registry=self.registry)
        self.jobs = Gauge("lipsync_jobs", "job records by status", ["status"], registry=self.registry)
        self.webhooks = Counter("lipsync_webhook_deliveries_total", "webhook deliveries by outcome",
                                ["outcome"], registry=self.registry)
        self.registry.register(_GpuMemory())
        self.http = Instrumentator(should_group_status_codes=False, registry=self.registry).add(
            http_metrics.requests(metric_namespace="lipsync", registry=self.registry),
            http_metrics.latency(metric_namespace="lipsync", buckets=_HTTP_BUCKETS, registry=self.registry))

    def instrument(self, app: FastAPI) -> None:
        """Count and time every answer of ``app`` per route (its outermost middleware: call
        it after adding the others). The app's own ``/metrics`` route serves the series."""
        self.http.instrument(app)

    def job_finished(self, record: JobRecord) -> None:
        """A job reached a terminal status (its webhook, if any, delivered or given up)."""
        if record.status == "succeeded" and record.result is not None:
            self.observe(record.result, record.owner)
        else:
            code = record.error["code"] if record.error else record.status
            self.failed(record.pipeline, code, record.owner)
        if record.webhook is not None:
            self.webhooks.labels("delivered" if record.webhook.delivered else "failed").inc()

    def observe(self, result: dict[str, Any], key: str | None = None) -> None:
        """A successful render (its success JSON)."""
        self.requests.labels(result["pipeline"], "ok", key or "-").inc()
        for step, sec in result["step_times"].items():
            self.steps.labels(result["pipeline"], step).observe(sec)
        for cache, hit in result["cache_hits"].items():
            self.cache.labels(cache, "hit" if hit else "miss").inc()

    def sample_jobs(self, jobs: JobQueue) -> None:
        """Read the queue's gauges (at scrape time)."""
        self.queue_depth.set(jobs.depth)
        for status, n in jobs.counts().items():
            self.jobs.labels(status).set(n)

    def error(self, code: str, status: int) -> None:
        self.errors.labels(code, str(status)).inc()

    def failed(self, pipeline: str, code: str, key: str | None = None) -> None:
        self.requests.labels(pipeline, code, key or "-").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
