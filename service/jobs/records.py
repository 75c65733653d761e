"""The job record: the only state that must survive a restart (DESIGN §10).

Its public JSON is what ``GET /api/v1/jobs/{job_id}`` answers and what webhooks carry;
``owner``, ``idempotency`` and ``error_status`` are kept for the service only.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from ..errors import InterruptedJobError, ServiceError

Status = Literal["queued", "running", "succeeded", "failed", "canceled"]
STATUSES: tuple[Status, ...] = ("queued", "running", "succeeded", "failed", "canceled")
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
PIPELINES = ("optimized", "baseline")


def now_rfc3339() -> str:
    """The current time, RFC 3339 UTC with milliseconds (``2026-11-30T15:07:54.123Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_last_order = 0
_order_lock = threading.Lock()


def next_order() -> int:
    """A number that grows with every record made here (nanoseconds, strictly increasing): two
    jobs submitted in the same millisecond still list in the order they were made."""
    global _last_order
    with _order_lock:
        _last_order = max(time.time_ns(), _last_order + 1)
        return _last_order


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


def request_fingerprint(request: dict[str, Any], pipeline: str, webhook_url: str | None) -> str:
    """What "the same body" means for ``Idempotency-Key``: the canonical JSON of the request."""
    canonical = json.dumps({"request": request, "pipeline": pipeline, "webhook_url": webhook_url},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Webhook:
    url: str
    delivered: bool = False
    attempts: int = 0
    last_status: int | None = None


@dataclass
class JobRecord:
    job_id: str
    pipeline: str
    request: dict[str, Any]
    status: Status = "queued"
    progress: dict[str, Any] = field(default_factory=lambda: {"step": "queued", "fraction": 0.0})
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    attempts: int = 0
    served_by: str | None = None
    created_at: str = field(default_factory=now_rfc3339)
    started_at: str | None = None
    finished_at: str | None = None
    webhook: Webhook | None = None
    # ---- kept for the service only ----
    owner: str | None = None
    """The API key name that made the job (None with keys off); other keys see 404."""
    idempotency: str | None = None
    """``Idempotency-Key`` header, if any, and ``fingerprint`` of the body it was sent with."""
    fingerprint: str = ""
    error_status: int | None = None
    """HTTP status of ``error`` for the synchronous routes."""
    request_id: str = "-"
    """The id of the HTTP request that made the job (logs carry it)."""
    order: int = field(default_factory=next_order)
    """Tie-break for ``created_at`` (milliseconds) when listing newest first."""
    detached: bool = True
    """False while a synchronous route waits for it: a shutdown then fails it (its caller was
    told) instead of keeping it queued for the next start."""

    PRIVATE = ("owner", "idempotency", "fingerprint", "error_status", "request_id", "order", "detached")

    @property
    def age_key(self) -> tuple[str, int]:
        """Sorts records oldest first."""
        return self.created_at, self.order

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def public(self) -> dict[str, Any]:
        """The record as the API shows it."""
        data = asdict(self)
        for key in self.PRIVATE:
            data.pop(key)
        return data

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> JobRecord:
        data = json.loads(raw)
        hook = data.pop("webhook", None)
        known = {f for f in cls.__dataclass_fields__}
        record = cls(**{k: v for k, v in data.items() if k in known})
        record.webhook = Webhook(**hook) if hook else None
        return record

    def copy(self) -> JobRecord:
        return replace(self, progress=dict(self.progress), webhook=replace(self.webhook) if self.webhook else None)


def job_failure(record: JobRecord) -> ServiceError:
    """The error a failed (or canceled) job ended with, as the exception its status maps to,
    for the synchronous routes that wait for it."""
    if record.status == "canceled":
        canceled = InterruptedJobError(f"job {record.job_id} was canceled before it finished; nothing was written")
        canceled.job_id = record.job_id  # type: ignore[attr-defined]
        return canceled
    info = record.error or {"code": "internal_error", "message": f"job {record.job_id} failed"}
    error = ServiceError(info["message"])
    error.code, error.http_status = info["code"], record.error_status or 500
    error.job_id = record.job_id  # type: ignore[attr-defined] - it was a job: the runner counted it
    return error
