"""Timing is data: a thread-safe accumulator of seconds per named stage."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class StageTimer:
    """Accumulates wall-clock seconds per stage; stages may run in several threads at once.

    ``sync_cuda`` synchronises the GPU before reading the clock, so asynchronous kernels
    are charged to the stage that launched them.
    """

    def __init__(self, sync_cuda: bool = False) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}
        self._sync = sync_cuda and torch.cuda.is_available()
        self._start = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self._sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self._sync:
                torch.cuda.synchronize()
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def seconds(self) -> dict[str, float]:
        with self._lock:
            return dict(self._seconds)

    def elapsed(self) -> float:
        return time.perf_counter() - self._start


def format_table(seconds: dict[str, float], total: float, title: str = "Performance Analysis") -> str:
    """A fixed-width table of stage seconds and their share of ``total``.

    Stages that overlap in threads can add up to more than the wall-clock total.
    """
    lines = [f"==== {title} ====", f"{'stage':<18}{'seconds':>10}{'share':>9}"]
    for name, sec in seconds.items():
        share = 100.0 * sec / total if total > 0 else 0.0
        lines.append(f"{name:<18}{sec:>10.3f}{share:>8.1f}%")
    lines.append(f"{'total (wall)':<18}{total:>10.3f}{100.0:>8.1f}%")
    return "\n".join(lines)
