"""Bounded retries with exponential backoff for transient storage failures."""
from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts after the first; the wait before retry ``n`` (0-based) is
    ``min(max_s, initial_s * 2**n)`` scaled by a random factor in [0.5, 1] so that concurrent
    clients do not retry in lock-step. Seconds."""

    retries: int = 3
    initial_s: float = 0.5
    max_s: float = 8.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.initial_s < 0 or self.max_s < 0:
            raise ValueError("backoff times must be >= 0")

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def delay(self, retry_index: int) -> float:
        return min(self.max_s, self.initial_s * 2.0**retry_index) * random.uniform(0.5, 1.0)


def call_with_retries(
    op: Callable[[], T],
    *,
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    what: str,
) -> T:
    """Run ``op`` until it returns, raises a non-transient error, or the attempts run out (then
    the last error propagates unchanged; the caller translates it)."""
    for attempt in range(policy.attempts):
        try:
            return op()
        except Exception as e:
            if attempt + 1 >= policy.attempts or not is_transient(e):
                raise
            delay = policy.delay(attempt)
            log.warning("%s failed (attempt %d/%d: %s: %s); retrying in %.2f s",
                        what, attempt + 1, policy.attempts, type(e).__name__, short_error(e), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop always returns or raises


def short_error(e: BaseException, limit: int = 300) -> str:
    """A one-line description of ``e`` for logs and messages."""
    text = str(getattr(e, "message", None) or e).replace("\n", " ")
    # requests buries the useful part ("[Errno 111] Connection refused") in a long repr
    errno_text = _ERRNO_TEXT.search(text)
    if errno_text:
        return errno_text.group(0)
    return text if len(text) <= limit else text[:limit] + "..."
