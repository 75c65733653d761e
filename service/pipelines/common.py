"""Pieces both pipelines share: a per-request temp folder and a step clock."""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

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
    """Seconds per pipeline step (:data:`STEPS`), synchronising the GPU before each reading."""

    def __init__(self, cuda: bool = False) -> None:
        self.times = dict.fromkeys(STEPS, 0.0)
        self._cuda = cuda and torch.cuda.is_available()
        self._t0 = time.perf_counter()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self._cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        try:
            yield
        finally:
            if self._cuda:
                torch.cuda.synchronize()
            self.times[name] += time.perf_counter() - t

    def finish(self) -> dict[str, float]:
        self.times["total"] = time.perf_counter() - self._t0
        return {k: round(v, 4) for k, v in self.times.items()}
