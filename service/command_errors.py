"""Exit codes of the ``lipsync`` commands and the one mapping from exceptions to them.

0 done, 2 bad input (the user can fix the command: unreadable media, no face, bad option),
1 anything else (missing weights, an unreachable service, our bug). Every failure is one
line on stderr; the traceback goes to the debug log (``lipsync -v``).
"""
from __future__ import annotations

import logging
import sys

from models import ModelLoadError

from .errors import BadInputError, ServiceError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


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
