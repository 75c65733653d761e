"""One device, one render at a time, with a bounded wait queue.

Renders run in worker threads; a request that would wait behind more than ``max_waiting``
others is refused at once with :class:`ServerBusyError` (HTTP 503 + Retry-After) instead
of piling up until clients time out.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from .errors import ServerBusyError

__all__ = ["DeviceGate", "DeviceThread", "ServerBusyError"]

T = TypeVar("T")


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


class DeviceThread:
    """The one thread all model work of a process runs on: loading and warming the models,
    and every render.

    Why one: torch's CPU kernels run on OpenMP (libgomp), which keeps a team of worker threads
    per thread that ever ran a parallel region. Once the process manages more OpenMP threads
    than it has CPUs (a preload on one thread and renders on another is already 4 on 2 cores),
    libgomp stops spinning between parallel regions and puts its workers to sleep after each
    one, so every one of the thousands of small ops of a render pays a futex wake-up. Measured
    on the 2-core benchmark machine: W-word's voice conversion 0.375 s with the preload on
    another thread, 0.275 s on the same one (bench/RESULTS.md).
    """

    NAME = "lipsync-device"

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        # a daemon, like the job workers: a process told to exit is not held by a render
        self._thread = threading.Thread(target=self._serve, name=self.NAME, daemon=True)
        self._closed = False
        self._thread.start()

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the device thread (at once when already on it); its
        result or its exception."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        if self._closed:
            raise RuntimeError("the device thread is closed (the runtime was closed)")
        done: Future[T] = Future()
        self._work.put((done, lambda: fn(*args, **kwargs)))
        return done.result()

    def close(self) -> None:
        """Stop taking work once what is queued has run (does not wait)."""
        if not self._closed:
            self._closed = True
            self._work.put(None)

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            done, call = item
            if not done.set_running_or_notify_cancel():
                continue
            try:
                done.set_result(call())
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                done.set_exception(e)
