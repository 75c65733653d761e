"""The job queue and its runner: submit, follow, cancel; one job at a time, in order.

Every change of a record is written to the :class:`~.store.JobStore` before anyone can see
it, so the store alone is enough to resume: at start-up, queued jobs are queued again and a
job that was running when the process died is retried (``attempts`` + 1) until
``max_attempts``, then failed as ``interrupted``. The running job can be stopped at its next
step or batch (cancel, shutdown). Finished records expire after ``ttl_s``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..errors import (
    ConflictError,
    InterruptedJobError,
    NotFoundError,
    ServerBusyError,
    ServiceError,
)
from .records import JobRecord, Status, Webhook, new_job_id, now_rfc3339, parse_time, request_fingerprint
from .store import JobStore

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
"""``(step, fraction)`` as the render goes."""
Execute = Callable[[JobRecord, Progress, Callable[[], bool]], dict[str, Any]]
"""Run a job's request: (record, progress, should_stop) -> the synchronous success JSON."""
PROGRESS_EVERY_S = 0.5  # progress is written at most about twice a second
PURGE_EVERY_S = 60.0


class IdempotencyConflictError(ConflictError):
    code = "idempotency_conflict"


class JobFinishedError(ConflictError):
    code = "job_finished"


class RendererLostError(ServiceError):
    """The process rendering the job died mid-job (a lost replica): the job is retried
    elsewhere, ``attempts`` + 1, up to ``max_attempts``."""

    code = "interrupted"
    http_status = 503


class JobQueue:
    """A bounded FIFO of jobs run by ``workers`` threads with ``execute`` (one per device or
    replica: each runs one job at a time, in submission order).

    ``on_finished(record)`` is called (in a thread of its own) for every terminal record:
    webhooks and metrics hang there.
    """

    def __init__(self, store: JobStore, execute: Execute, *, served_by: str, max_queued: int = 100,
                 max_attempts: int = 3, ttl_s: float = 7 * 24 * 3600,
                 on_finished: Callable[[JobRecord], None] | None = None, workers: int = 1) -> None:
        self.store, self.execute, self.served_by = store, execute, served_by
        self.max_queued, self.max_attempts, self.ttl_s = max_queued, max_attempts, ttl_s
        self.on_finished = on_finished
        self._records: dict[str, JobRecord] = {}
        self._keys: dict[tuple[str | None, str], str] = {}  # (owner, Idempotency-Key) -> job id
        self._waiting: deque[str] = deque()
        self._lock = threading.Condition()
        self._cancel: dict[str, threading.Event] = {}
        self._stopping = threading.Event()
        self._interrupt = threading.Event()
        self._workers: list[threading.Thread] = []
        self._n_workers = workers
        self._last_purge = 0.0

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load the store, resume what a previous process left, start the worker."""
        with self._lock:
            outcomes = [self._resume(r) for r in sorted(self.store.load_all(), key=lambda r: r.age_key)]
        resumed, failed = outcomes.count("queued"), outcomes.count("failed")
        if resumed or failed:
            log.warning("jobs from an earlier process in %s: %d queued again, %d failed after %d attempts",
                        self.store.where, resumed, failed, self.max_attempts)
        self._workers = [threading.Thread(target=self._run, name=f"job-runner-{i}", daemon=True)
                         for i in range(self._n_workers)]
        for worker in self._workers:
            worker.start()

    def _resume(self, record: JobRecord) -> str:
        """Take one stored record back (lock held): ``expired``, ``kept``, ``queued`` or ``failed``."""
        if record.finished:
            if self._expired(record):
                self.store.delete(record.job_id)
                return "expired"
            self._index(record)
            return "kept"
        self._index(record)
        if not record.detached:
            # its caller waited on a connection that died with the process and was never told
            # a job id: running it now would write an output nobody expects
            self._finish(record, "failed", notify=False, error=InterruptedJobError(
                "the service stopped while this synchronous request was waiting; submit it again"))
            return "failed"
        if record.status == "running" and record.attempts >= self.max_attempts:
            self._finish(record, "failed", notify=False, error=InterruptedJobError(
                f"the job was interrupted {record.attempts} times (the process stopped while it ran); "
                "giving up: submit it again"))
            return "failed"
        record.status, record.progress = "queued", {"step": "queued", "fraction": 0.0}
        self.store.put(record)
        self._waiting.append(record.job_id)
        return "queued"

    def close(self, grace_s: float) -> bool:
        """Stop: no new jobs; the running one gets ``grace_s`` to finish, then stops at its
        next step or batch. Queued jobs stay queued in the store for the next start, except
        those a synchronous caller waits for: they fail as ``interrupted`` (the caller is
        told now). True when nothing had to be interrupted."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        interrupted = False
        deadline = time.monotonic() + grace_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if any(w.is_alive() for w in self._workers):
            log.warning("shutdown: running jobs are still going after %.0f s; interrupting them", grace_s)
            interrupted = True
            self._interrupt.set()
            for worker in self._workers:
                worker.join()
        with self._lock:
            for job_id in [j for j in self._waiting if not self._records[j].detached]:
                self._waiting.remove(job_id)
                self._finish(self._records[job_id], "failed", error=InterruptedJobError(
                    "the service shut down before the job started; submit it again"))
        return not interrupted

    @property
    def running(self) -> JobRecord | None:
        with self._lock:
            return next((r.copy() for r in self._records.values() if r.status == "running"), None)

    @property
    def depth(self) -> int:
        """Jobs waiting (not counting the running one)."""
        return len(self._waiting)

    def counts(self) -> dict[Status, int]:
        with self._lock:
            out: dict[Status, int] = dict.fromkeys(("queued", "running", "succeeded", "failed", "canceled"), 0)
            for r in self._records.values():
                out[r.status] += 1
            return out

    # ---- the API's operations -----------------------------------------------------------------

    def submit(self, request: dict[str, Any], pipeline: str, *, owner: str | None = None,
               webhook_url: str | None = None, idempotency_key: str | None = None,
               detached: bool = True, request_id: str = "-") -> tuple[JobRecord, bool]:
        """Queue a job; (its record, True) — or the existing job for a repeated
        ``idempotency_key`` with the same body, (record, False). ``detached=False``: a
        synchronous caller waits for it (a shutdown fails it instead of keeping it queued)."""
        fingerprint = request_fingerprint(request, pipeline, webhook_url)
        with self._lock:
            if idempotency_key is not None:
                existing = self._keys.get((owner, idempotency_key))
                if existing is not None and existing in self._records:
                    record = self._records[existing]
                    if record.fingerprint != fingerprint:
                        raise IdempotencyConflictError(
                            f"Idempotency-Key {idempotency_key!r} was used for a different request (job "
                            f"{record.job_id}); use a new key for a new request")
                    return record.copy(), False
            if self._stopping.is_set():
                raise ServerBusyError("the service is shutting down; retry on another instance", 5)
            if len(self._waiting) >= self.max_queued:
                raise ServerBusyError(f"the job queue is full ({len(self._waiting)} jobs waiting, MAX_QUEUED_JOBS "
                                      f"{self.max_queued}); retry later", 30)
            record = JobRecord(job_id=new_job_id(), pipeline=pipeline, request=request, owner=owner,
                               idempotency=idempotency_key, fingerprint=fingerprint,
                               webhook=Webhook(webhook_url) if webhook_url else None, detached=detached,
                               request_id=request_id)
            self.store.put(record)
            self._records[record.job_id] = record
            self._index(record)
            self._waiting.append(record.job_id)
            self._lock.notify_all()
            return record.copy(), True

    def get(self, job_id: str, owner: str | None) -> JobRecord:
        """The record, or :class:`NotFoundError` (also for another key's job: it is not yours to see)."""
        with self._lock:
            return self._own(job_id, owner).copy()

    def list(self, owner: str | None, status: str | None = None, limit: int = 20) -> list[JobRecord]:
        """The caller's recent jobs, newest first."""
        with self._lock:
            mine = [r for r in self._records.values() if r.owner == owner and (status is None or r.status == status)]
            mine.sort(key=lambda r: r.age_key, reverse=True)
            return [r.copy() for r in mine[:limit]]

    def cancel(self, job_id: str, owner: str | None) -> JobRecord:
        """Cancel: a queued job at once, a running one at its next step or batch (poll for the
        status), a finished one is :class:`JobFinishedError`."""
        with self._lock:
            record = self._own(job_id, owner)
            if record.finished:
                raise JobFinishedError(f"job {job_id} already {record.status}; nothing to cancel")
            if record.status == "queued":
                self._waiting.remove(job_id)
                self._finish(record, "canceled")
            else:
                self._cancel.setdefault(job_id, threading.Event()).set()
            return record.copy()

    # ---- the worker -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping.is_set():
                    self._lock.wait(timeout=PURGE_EVERY_S)
                    self._purge()
                if self._stopping.is_set():
                    return
                record = self._records[self._waiting.popleft()]
                record.status, record.attempts = "running", record.attempts + 1
                record.started_at, record.served_by = now_rfc3339(), self.served_by
                record.progress = {"step": "starting", "fraction": 0.0}
                cancel = self._cancel.setdefault(record.job_id, threading.Event())
                self.store.put(record)
                self._lock.notify_all()
            self._execute(record, cancel)
            self._purge()

    def _execute(self, record: JobRecord, cancel: threading.Event) -> None:
        last_write = 0.0

        def progress(step: str, fraction: float) -> None:
            nonlocal last_write
            with self._lock:
                changed = step != record.progress.get("step")
                record.progress = {"step": step, "fraction": round(min(max(fraction, 0.0), 1.0), 3)}
                if changed or time.monotonic() - last_write >= PROGRESS_EVERY_S:
                    self.store.put(record)
                    last_write = time.monotonic()

        def should_stop() -> bool:
            return cancel.is_set() or self._interrupt.is_set()

        try:
            result = self.execute(record.copy(), progress, should_stop)
        except RendererLostError as e:
            with self._lock:
                if record.attempts < self.max_attempts and not cancel.is_set():
                    log.warning("job %s: %s; retrying (attempt %d of %d)", record.job_id, e, record.attempts + 1,
                                self.max_attempts)
                    record.status, record.progress = "queued", {"step": "queued", "fraction": 0.0}
                    self.store.put(record)
                    self._waiting.appendleft(record.job_id)  # it was first in line: it stays first
                    self._lock.notify_all()
                else:
                    self._finish(record, "canceled" if cancel.is_set() else "failed", error=e)
        except InterruptedJobError as e:
            with self._lock:
                if cancel.is_set():
                    self._finish(record, "canceled")
                elif record.detached:
                    # a shutdown: the job was not its caller's to lose; the next start runs it
                    record.status, record.progress = "queued", {"step": "queued", "fraction": 0.0}
                    self.store.put(record)
                    self._lock.notify_all()
                else:
                    self._finish(record, "failed", error=e)
        except ServiceError as e:
            with self._lock:
                self._finish(record, "failed", error=e)
        except Exception as e:  # noqa: BLE001 - our bug: the job fails, the worker goes on
            log.exception("job %s failed unexpectedly", record.job_id)
            with self._lock:
                self._finish(record, "failed", error=ServiceError(
                    f"internal error ({type(e).__name__}); the job id identifies it in the server log"))
        else:
            with self._lock:
                record.served_by = result.get("served_by", record.served_by)
                self._finish(record, "succeeded", result=result)
        finally:
            self._cancel.pop(record.job_id, None)

    # ---- helpers (call with the lock held) ------------------------------------------------------

    def _finish(self, record: JobRecord, status: Status, *, result: dict[str, Any] | None = None,
                error: ServiceError | None = None, notify: bool = True) -> None:
        record.status, record.finished_at, record.result = status, now_rfc3339(), result
        if error is not None:
            record.error = {"code": error.code, "message": str(error)}
            record.error_status = error.http_status
        record.progress = {"step": "done" if status == "succeeded" else status,
                           "fraction": 1.0 if status == "succeeded" else record.progress.get("fraction", 0.0)}
        self.store.put(record)
        self._records[record.job_id] = record
        self._lock.notify_all()
        if notify and self.on_finished is not None:
            threading.Thread(target=self.on_finished, args=(record.copy(),), name="job-finished", daemon=True).start()

    def update(self, record: JobRecord) -> None:
        """Store fields changed after the job finished (the webhook's outcome)."""
        with self._lock:
            current = self._records.get(record.job_id)
            if current is not None:
                current.webhook = record.webhook
                self.store.put(current)

    def _own(self, job_id: str, owner: str | None) -> JobRecord:
        record = self._records.get(job_id)
        if record is None or record.owner != owner:
            raise NotFoundError(f"no job {job_id!r} (jobs expire after JOB_TTL_S; other keys' jobs are not visible)")
        return record

    def _index(self, record: JobRecord) -> None:
        self._records[record.job_id] = record
        if record.idempotency is not None:
            self._keys[(record.owner, record.idempotency)] = record.job_id

    def _expired(self, record: JobRecord) -> bool:
        if record.finished_at is None:
            return False
        age = (datetime.now(UTC) - parse_time(record.finished_at)).total_seconds()
        return age > self.ttl_s

    def _purge(self) -> None:
        if time.monotonic() - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = time.monotonic()
        with self._lock:
            for record in [r for r in self._records.values() if r.finished and self._expired(r)]:
                del self._records[record.job_id]
                self._keys.pop((record.owner, record.idempotency or ""), None)
                self.store.delete(record.job_id)
