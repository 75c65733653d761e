"""Logging for the entry points (CLI, API): one format, request ids, quiet third parties.

Library modules only create loggers; this is the one place that configures them.
"""
from __future__ import annotations

import contextvars
import logging
import os
import warnings

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_NOISY = ("numba", "urllib3", "google.auth", "google.resumable_media", "google.api_core",
          "PIL", "matplotlib", "httpx", "httpcore", "multipart", "asyncio", "filelock",
          "libav", "h5py")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure_logging(level: int | str = logging.INFO) -> None:
    """Configure the root logger once; safe to call again (it replaces its own handler)."""
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        if getattr(h, "_lipsync", False):
            root.removeHandler(h)
    handler = logging.StreamHandler()
    handler._lipsync = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    root.addHandler(handler)
    quiet_third_parties()


def quiet_third_parties() -> None:
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the hub
    for category, pattern in ((FutureWarning, r".*weight_norm.*"), (UserWarning, r".*TypedStorage.*"),
                              (DeprecationWarning, r".*"), (UserWarning, r".*stft.*"),
                              (UserWarning, r".*librosa.*"), (UserWarning, r".*numba.*")):
        warnings.filterwarnings("ignore", category=category, message=pattern)
