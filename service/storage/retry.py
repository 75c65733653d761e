"""Bounded retries with exponential backoff for transient storage failures, on google-api-core's
:class:`~google.api_core.retry.Retry`.

``Retry`` bounds retrying by time only (it has no attempt cap: googleapis/python-api-core#535),
while the service's setting is a number of attempts. So each storage operation gets an
:class:`AttemptBudget`, and every ``Retry`` working for that operation (google-cloud-storage may
retry several requests of one operation, such as the chunks of a resumable upload) spends it
through its predicate: once the attempts are used up the predicate says no, and ``Retry`` raises
the last error unchanged.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from google.api_core.retry import Retry

log = logging.getLogger(__name__)

BACKOFF_MULTIPLIER = 2.0
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts after the first, per operation; the wait before retry ``n``
    (0-based) is drawn uniformly from ``[0, min(max_s, initial_s * 2**n)]`` (api-core's
    "full jitter", so that concurrent clients do not retry in lock-step). Seconds."""

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

    @property
    def max_backoff_s(self) -> float:
        """The longest the waits between all attempts can add up to."""
        return sum(min(self.max_s, self.initial_s * BACKOFF_MULTIPLIER**n) for n in range(self.retries))

    def deadline_s(self, request_timeout_s: float) -> float:
        """How long all attempts of one request can take when each ends within its timeout."""
        return self.attempts * request_timeout_s + self.max_backoff_s

    def build(self, *, predicate: Callable[[Exception], bool], timeout_s: float | None) -> Retry:
        """A ``Retry`` with this policy's backoff. ``timeout_s`` is api-core's deadline: no retry
        starts after it (``None``: no deadline, the attempts alone bound the retrying)."""
        return Retry(predicate=predicate, initial=self.initial_s, maximum=self.max_s,
                     multiplier=BACKOFF_MULTIPLIER, timeout=timeout_s)


class AttemptBudget:
    """The attempts of one operation (``what``: "upload to gs://b/o"), shared by every ``Retry``
    made with :meth:`retry`. Not thread-safe: one per operation, in the thread running it.

    ``Retry`` objects are plain values (settings and a predicate), so making one per operation
    costs nothing; the policy that shapes them is built once, in :class:`RetryPolicy`."""

    def __init__(self, policy: RetryPolicy, what: str) -> None:
        self._policy = policy
        self._what = what
        self.retried = 0

    @property
    def attempts(self) -> int:
        """Attempts made so far (while the operation runs: including the current one)."""
        return self.retried + 1

    def retry(self, retryable: Callable[[Exception], bool], *, timeout_s: float | None) -> Retry:
        """A ``Retry`` with the policy's backoff that retries the errors ``retryable`` accepts
        while this budget lasts (``timeout_s``: see :meth:`RetryPolicy.build`)."""
        return self._policy.build(predicate=lambda e: retryable(e) and self._spend(e), timeout_s=timeout_s)

    def _spend(self, e: Exception) -> bool:
        if self.retried >= self._policy.retries:
            return False
        self.retried += 1
        log.warning("%s failed (attempt %d/%d: %s: %s); retrying", self._what, self.retried,
                    self._policy.attempts, type(e).__name__, short_error(e))
        return True


def short_error(e: BaseException, limit: int = 300) -> str:
    """A one-line description of ``e`` for logs and messages."""
    text = str(getattr(e, "message", None) or e).replace("\n", " ")
    # requests buries the useful part ("[Errno 111] Connection refused") in a long repr
    errno_text = _ERRNO_TEXT.search(text)
    if errno_text:
        return errno_text.group(0)
    return text if len(text) <= limit else text[:limit] + "..."
