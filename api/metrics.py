"""Prometheus metrics, one registry per app (so tests can build many apps)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.pipelines import LipVideoResult

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300)


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

    def observe(self, result: LipVideoResult, key: str | None = None) -> None:
        self.requests.labels(result.pipeline, "ok", key or "-").inc()
        for step, sec in result.step_times.items():
            self.steps.labels(result.pipeline, step).observe(sec)
        for cache, hit in result.cache_hits.items():
            self.cache.labels(cache, "hit" if hit else "miss").inc()

    def error(self, code: str, status: int) -> None:
        self.errors.labels(code, str(status)).inc()

    def failed(self, pipeline: str, code: str, key: str | None = None) -> None:
        self.requests.labels(pipeline, code, key or "-").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
