"""Pieces both pipelines share: a per-request temp folder, a step clock that also stops a
render on request, and errors in the caller's terms."""
from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InterruptedJobError, ServiceError
from ..timing import StageTimer
from .base import STEPS, LipVideoJob, LipVideoResult

if TYPE_CHECKING:
    from ..lipsync.engine import SyncResult
    from ..storage import Storage

log = logging.getLogger(__name__)

REQUEST_PREFIX = "req-"
StopCheck = Callable[[], bool]
ProgressReport = Callable[[str, float], None]
"""``(step, fraction)``: the step entered, and the share of lip-sync frames done."""


@contextmanager
def request_dir(work_dir: Path, request_id: str) -> Iterator[Path]:
    """A private temp folder for one request, always removed (success or failure)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{REQUEST_PREFIX}{request_id[:16]}-", dir=work_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_request_dirs(work_dir: Path) -> int:
    """Remove the request folders a killed process left in ``work_dir``; returns how many.

    Call at start-up, before this process makes any: a folder is only ever owned by the
    process that made it, and that process is gone."""
    if not work_dir.is_dir():
        return 0
    stale = [p for p in work_dir.glob(f"{REQUEST_PREFIX}*") if p.is_dir()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


class StepClock:
    """Seconds per pipeline step (:data:`STEPS`) on a :class:`StageTimer`; ``total`` is the
    wall time since the clock was made. With ``should_stop``, entering a step (and every
    lip-sync batch, :meth:`frames_done`) raises :class:`InterruptedJobError` once it returns
    True. ``progress`` hears of each step entered and of the lip-sync frames done."""

    def __init__(self, cuda: bool = False, should_stop: StopCheck | None = None,
                 progress: ProgressReport | None = None) -> None:
        self._timer = StageTimer(sync_cuda=cuda)
        self._should_stop = should_stop
        self._progress = progress
        self.add = self._timer.add

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.check()
        if self._progress is not None:
            self._progress(name, 0.0)
        with self._timer.stage(name):
            yield

    def frames_done(self, done: int, total: int) -> None:
        """The engine's progress callback: stop if asked, report the lip-sync fraction."""
        self.check()
        if self._progress is not None and total > 0:
            self._progress("lipsync", done / total)

    def check(self) -> None:
        """Raise if the render must stop."""
        if self._should_stop is not None and self._should_stop():
            raise InterruptedJobError("the render was interrupted before it finished (the service is shutting "
                                      "down or the job was canceled); nothing was written; submit it again")

    def finish(self) -> dict[str, float]:
        times = dict.fromkeys(STEPS, 0.0) | self._timer.seconds()
        times["total"] = self._timer.elapsed()
        return {k: round(v, 4) for k, v in times.items()}


@contextmanager
def in_callers_terms(local: Path, uri: str) -> Iterator[None]:
    """Errors raised about the local copy ``local`` of ``uri`` name ``uri`` instead: the
    caller sent a URI and never sees the server's paths."""
    try:
        yield
    except ServiceError as e:
        text = str(e)
        for spelling in (str(local), str(local.resolve())):
            text = text.replace(spelling, uri)
        if text != str(e):
            e.args = (text, *e.args[1:])
        raise


def upload_result(pipeline: str, job: LipVideoJob, sync: SyncResult, out: Path, storage: Storage,
                  clock: StepClock, hits: dict[str, bool], input_bytes: int) -> LipVideoResult:
    """The tail both pipelines share: count the encoder's busy time (it ran in its own thread,
    overlapped with lip-sync), upload the mp4 all or nothing, and describe the result."""
    clock.add("encode", sync.seconds.get("encode", 0.0))
    with clock.step("upload"):
        storage.upload(out, job.output_uri)
    return LipVideoResult(job.output_uri, pipeline, sync.frames / sync.fps, clock.finish(), hits, input_bytes,
                          out.stat().st_size, sync.frames,
                          sync.face_detection.as_dict() if sync.face_detection else None)
