"""The job queue on its own: order, bounds, idempotency, cancel, recovery after a dead
process, expiry; with both stores (a folder, and the real GCS emulator). The render is a
plain function here; tests/test_jobs_api.py runs real renders."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.errors import InterruptedJobError, NotFoundError, ServerBusyError
from service.jobs.queue import IdempotencyConflictError, JobFinishedError, JobQueue
from service.jobs.records import JobRecord
from service.jobs.store import FolderJobStore, GcsJobStore, JobStore, make_job_store
from service.storage import Storage

from .gcs_emulator import EmulatorBucket, GCSEmulator

REQUEST = {"word": "hi", "user_video_gs": "gs://b/in.mp4", "output_video_gs": "gs://b/out.mp4"}


class Renders:
    """A render that takes as long as the test says (``release``), and stops when asked."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, record: JobRecord, progress: Callable[[str, float], None],
                 should_stop: Callable[[], bool]) -> dict[str, Any]:
        self.started.append(record.job_id)
        progress("lipsync", 0.5)
        while not self.gate.wait(0.01):
            if should_stop():
                raise InterruptedJobError("stopped")
        return {"output_video_gs": record.request["output_video_gs"], "job_id": record.job_id}


def _wait(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture(params=["folder", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "folder":
        yield FolderJobStore(tmp_path / "jobs")
        return
    emulator: GCSEmulator = request.getfixturevalue("gcs_emulator")
    bucket: EmulatorBucket = request.getfixturevalue("gcs_bucket")
    with Storage(emulator_host=emulator.host) as storage:
        yield make_job_store(f"gs://{bucket.name}/jobs", tmp_path, storage.gcs)


def _queue(store: JobStore, render: Renders, **kw: Any) -> JobQueue:
    q = JobQueue(store, render, served_by="test:1", **kw)
    q.start()
    return q


def test_jobs_run_in_order_and_every_change_is_stored(store: JobStore) -> None:
    render = Renders()
    q = _queue(store, render)
    a, created = q.submit(REQUEST, "optimized")
    b, _ = q.submit(REQUEST | {"word": "two"}, "baseline")
    assert created and a.status == "queued"
    _wait(lambda: q.get(b.job_id, None).status == "succeeded")
    assert render.started == [a.job_id, b.job_id]
    stored = {r.job_id: r for r in store.load_all()}
    done = stored[a.job_id]
    assert done.status == "succeeded" and done.attempts == 1 and done.served_by == "test:1"
    assert done.result == {"output_video_gs": "gs://b/out.mp4", "job_id": a.job_id}
    assert done.progress == {"step": "done", "fraction": 1.0} and done.finished_at and done.started_at
    q.close(0)


def test_idempotency_same_body_same_job_other_body_conflict(store: JobStore) -> None:
    q = _queue(store, Renders())
    first, created = q.submit(REQUEST, "optimized", idempotency_key="k1")
    again, created_again = q.submit(REQUEST, "optimized", idempotency_key="k1")
    assert created and not created_again and again.job_id == first.job_id
    with pytest.raises(IdempotencyConflictError):
        q.submit(REQUEST | {"word": "else"}, "optimized", idempotency_key="k1")
    other, created_other = q.submit(REQUEST, "optimized", idempotency_key="k1", owner="someone-else")
    assert created_other and other.job_id != first.job_id  # keys are per owner
    q.close(0)


def test_owners_see_only_their_jobs_newest_first(store: JobStore) -> None:
    render = Renders()
    render.gate.clear()
    q = _queue(store, render)
    mine = [q.submit(REQUEST, "optimized", owner="alice")[0] for _ in range(3)]
    q.submit(REQUEST, "optimized", owner="bob")
    with pytest.raises(NotFoundError):
        q.get(mine[0].job_id, "bob")
    assert [r.job_id for r in q.list("alice")] == [r.job_id for r in reversed(mine)]
    assert [r.job_id for r in q.list("alice", status="queued", limit=1)] == [mine[2].job_id]
    render.gate.set()
    q.close(5)


def test_jobs_made_in_the_same_millisecond_list_in_the_order_they_were_made(
        store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # created_at has millisecond resolution: a fast caller submits several jobs inside one tick
    import service.jobs.records as records

    class FrozenClock(records.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return records.datetime(2026, 11, 30, 12, 0, 0, 123000, tzinfo=tz)

    monkeypatch.setattr(records, "datetime", FrozenClock)
    render = Renders()
    render.gate.clear()
    q = _queue(store, render)
    mine = [q.submit(REQUEST, "optimized", owner="alice")[0] for _ in range(6)]
    assert len({r.created_at for r in mine}) == 1
    assert [r.job_id for r in q.list("alice")] == [r.job_id for r in reversed(mine)]
    render.gate.set()
    q.close(5)
    # and after a restart, from the store alone
    again = _queue(store, Renders())
    assert [r.job_id for r in again.list("alice")] == [r.job_id for r in reversed(mine)]
    again.close(5)


def test_queue_is_bounded(store: JobStore) -> None:
    render = Renders()
    render.gate.clear()
    q = _queue(store, render, max_queued=2)
    q.submit(REQUEST, "optimized")
    _wait(lambda: q.running is not None)
    q.submit(REQUEST, "optimized")
    q.submit(REQUEST, "optimized")
    with pytest.raises(ServerBusyError) as e:
        q.submit(REQUEST, "optimized")
    assert e.value.retry_after_s > 0
    render.gate.set()
    q.close(5)


def test_cancel_queued_at_once_running_at_next_batch_finished_409(store: JobStore) -> None:
    render = Renders()
    render.gate.clear()
    q = _queue(store, render)
    running, _ = q.submit(REQUEST, "optimized")
    queued, _ = q.submit(REQUEST, "optimized")
    _wait(lambda: q.get(running.job_id, None).status == "running")
    assert q.cancel(queued.job_id, None).status == "canceled"
    q.cancel(running.job_id, None)
    _wait(lambda: q.get(running.job_id, None).status == "canceled")
    assert render.started == [running.job_id]  # the canceled queued job never ran
    with pytest.raises(JobFinishedError):
        q.cancel(running.job_id, None)
    q.close(0)


def test_a_dead_process_jobs_resume_then_give_up(store: JobStore) -> None:
    render = Renders()
    render.gate.clear()
    dead = _queue(store, render, max_attempts=2)
    running, _ = dead.submit(REQUEST, "optimized")
    waiting, _ = dead.submit(REQUEST, "optimized")
    sync, _ = dead.submit(REQUEST, "optimized", detached=False)
    _wait(lambda: dead.get(running.job_id, None).status == "running")
    # the process "dies": its worker never finishes; a new queue reads the same store
    again = Renders()
    again.gate.clear()
    second = _queue(store, again, max_attempts=2)
    assert second.get(sync.job_id, None).status == "failed"  # its caller's connection died with it
    assert second.get(sync.job_id, None).error["code"] == "interrupted"  # type: ignore[index]
    _wait(lambda: second.get(running.job_id, None).status == "running")
    assert second.get(running.job_id, None).attempts == 2 and again.started == [running.job_id]
    third = _queue(store, Renders(), max_attempts=2)  # and that one dies too: 2 attempts used up
    failed = third.get(running.job_id, None)
    assert failed.status == "failed" and failed.error["code"] == "interrupted"  # type: ignore[index]
    _wait(lambda: third.get(waiting.job_id, None).status == "succeeded")
    for q in (dead, second, third):
        q.close(0) if q is third else q._stopping.set()  # noqa: SLF001 - the "dead" ones just stop
    render.gate.set()
    again.gate.set()


def test_shutdown_keeps_detached_jobs_and_fails_waited_ones(store: JobStore) -> None:
    render = Renders()
    render.gate.clear()
    q = _queue(store, render)
    running, _ = q.submit(REQUEST, "optimized")
    queued, _ = q.submit(REQUEST, "optimized")
    waited, _ = q.submit(REQUEST, "optimized", detached=False)
    _wait(lambda: q.get(running.job_id, None).status == "running")
    assert q.close(0.1) is False  # had to interrupt
    assert q.get(running.job_id, None).status == "queued"  # runs again at the next start
    assert q.get(queued.job_id, None).status == "queued"
    assert q.get(waited.job_id, None).status == "failed"
    with pytest.raises(ServerBusyError):
        q.submit(REQUEST, "optimized")


def test_finished_records_expire(store: JobStore) -> None:
    q = _queue(store, Renders(), ttl_s=0.2)
    job, _ = q.submit(REQUEST, "optimized")
    _wait(lambda: q.get(job.job_id, None).finished)
    q.close(0)
    time.sleep(0.3)
    later = _queue(store, Renders(), ttl_s=0.2)
    with pytest.raises(NotFoundError):
        later.get(job.job_id, None)
    assert job.job_id not in {r.job_id for r in store.load_all()}
    later.close(0)


def test_records_are_written_whole(tmp_path: Path) -> None:
    store = FolderJobStore(tmp_path / "jobs")
    (tmp_path / "jobs" / ".job_0123.x.part").write_text('{"half')  # a write a killed process left
    record = JobRecord(job_id="job_" + "0" * 32, pipeline="optimized", request=REQUEST)
    store.put(record)
    assert [r.job_id for r in store.load_all()] == [record.job_id]
    assert [p.name for p in (tmp_path / "jobs").iterdir()] == [f"{record.job_id}.json"]


def test_gcs_store_is_objects_under_the_prefix(gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket,
                                               tmp_path: Path) -> None:
    with Storage(emulator_host=gcs_emulator.host) as storage:
        store = make_job_store(f"gs://{gcs_bucket.name}/deploy/jobs", tmp_path, storage.gcs)
        assert isinstance(store, GcsJobStore)
        record = JobRecord(job_id="job_" + "1" * 32, pipeline="optimized", request=REQUEST)
        store.put(record)
        assert gcs_bucket.names() == [f"deploy/jobs/{record.job_id}.json"]
        assert [r.job_id for r in store.load_all()] == [record.job_id]
        store.delete(record.job_id)
        assert gcs_bucket.names() == []
