"""Exit codes of the ``lipsync`` commands and the one mapping from exceptions to them.

0 done, 2 bad input (the user can fix the command: unreadable media, no face, bad option),
1 anything else (missing weights, an unreachable service, our bug). Every failure is one
line on stderr; the traceback goes to the debug log (``lipsync -v``).
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from models import ModelLoadError

from ..errors import BadInputError, ServiceError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2

BAD_INPUT_CODES = frozenset({
    "invalid_request", "unsupported_media", "no_face", "no_audio", "input_too_large", "not_found",
    "bucket_not_allowed", "unauthorized", "forbidden", "output_exists", "idempotency_conflict", "job_finished",
    "webhook_not_allowed"})
"""The service's error codes (``service/errors.py``) the caller can fix by sending something else."""


def exit_code_for_error_code(code: str) -> int:
    """The exit code for an error ``code`` the service reported (a failed job's): 2 for the
    caller's input, 1 for the rest (storage, models, busy, interrupted, our bug, unknown codes)."""
    return EXIT_BAD_INPUT if code in BAD_INPUT_CODES else EXIT_ERROR


def report_failure(command: str, e: Exception) -> int:
    """Print ``e`` as one line and return the exit code it deserves."""
    if isinstance(e, (BadInputError, ValueError)):
        # ValueError: option values the parser cannot check (device, sizes, chunking)
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if isinstance(e, (ServiceError, ModelLoadError, FileNotFoundError)) and str(e):
        print(f"error: {e}", file=sys.stderr)  # already a message written for the user
        return EXIT_ERROR
    log.debug("%s failed", command, exc_info=e)
    print(f"error: {type(e).__name__}: {e} (run with -v for the traceback)", file=sys.stderr)
    return EXIT_ERROR


T = TypeVar("T")


def run_reported(command: str, work: Callable[[], T], report: Callable[[T], None]) -> int:
    """The tail every command shares: run ``work``; a failure becomes one line and its exit
    code, a success is ``report``-ed (stdout/stderr) and exits 0."""
    try:
        result = work()
    except Exception as e:  # noqa: BLE001 - mapped to an exit code and one line
        return report_failure(command, e)
    report(result)
    return EXIT_OK
