"""Pieces both pipelines share: a per-request temp folder and a step clock."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..timing import StageTimer
from .base import STEPS


@contextmanager
def request_dir(work_dir: Path, request_id: str) -> Iterator[Path]:
    """A private temp folder for one request, always removed (success or failure)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"req-{request_id[:16]}-", dir=work_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class StepClock:
    """Seconds per pipeline step (:data:`STEPS`) on a :class:`StageTimer`; ``total`` is the
    wall time since the clock was made."""

    def __init__(self, cuda: bool = False) -> None:
        self._timer = StageTimer(sync_cuda=cuda)
        self.step = self._timer.stage
        self.add = self._timer.add

    def finish(self) -> dict[str, float]:
        times = dict.fromkeys(STEPS, 0.0) | self._timer.seconds()
        times["total"] = self._timer.elapsed()
        return {k: round(v, 4) for k, v in times.items()}
