"""One device, one render at a time, with a bounded wait queue.

Renders run in worker threads; a request that would wait behind more than ``max_waiting``
others is refused at once with :class:`ServerBusyError` (HTTP 503 + Retry-After) instead
of piling up until clients time out.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ServerBusyError

__all__ = ["DeviceGate", "ServerBusyError"]


class DeviceGate:
    def __init__(self, max_waiting: int = 4, retry_after_s: int = 10) -> None:
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self._device = threading.Lock()
        self._count = threading.Lock()
        self._pending = 0  # running + waiting

    @property
    def pending(self) -> int:
        return self._pending

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold the device for the body; raises ServerBusyError when the queue is full."""
        with self._count:
            if self._pending > self.max_waiting:
                raise ServerBusyError(f"server busy: {self._pending} requests are running or waiting "
                                      f"(limit {self.max_waiting + 1}); retry in {self.retry_after_s} s",
                                      self.retry_after_s)
            self._pending += 1
        try:
            with self._device:
                yield
        finally:
            with self._count:
                self._pending -= 1
