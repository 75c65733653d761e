"""Logging for the entry points (CLI, API): one format, request and job ids, quiet third parties.

Library modules only create loggers; this is the one place that configures them.

Two formats (``LOG_FORMAT``):

``text``
    ``<time> <LEVEL> [<request id>] <logger>: <message>``, for people at a terminal.
``json``
    One JSON object per line, for a platform that parses them (Cloud Logging, Loki, ...):
    ``severity`` (``DEBUG``/``INFO``/``WARNING``/``ERROR``/``CRITICAL``, the names Cloud
    Logging reads), ``message``, ``logger``, ``request_id`` and ``job_id`` (``null`` outside a
    request or job), ``time`` (RFC 3339, UTC), then whatever the record carries in ``extra=``
    (the Performance Analysis record: its step times and counts, see
    :func:`service.pipelines.report.log_performance`) and ``exc_info`` for a traceback.
"""
from __future__ import annotations

import contextvars
import logging
import os
import warnings
from typing import Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="-")

_NOISY = ("numba", "urllib3", "google.auth", "google.resumable_media", "google.api_core",
          "PIL", "matplotlib", "httpx", "httpcore", "multipart", "asyncio", "filelock",
          "libav", "h5py")
# uvicorn's own log config (``uvicorn api.main:app``) gives these loggers their own text
# handlers; in json mode they go through ours instead, so every line on stderr parses
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")
_TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
_JSON_FIELDS = ("levelname", "message", "name", "request_id", "job_id")
_JSON_RENAMES = {"levelname": "severity", "name": "logger"}
# uvicorn's coloured copy of its message is noise in a JSON line
_JSON_SKIPPED = (*RESERVED_ATTRS, "color_message")


class _ContextFilter(logging.Filter):
    """Copies the request and job ids of the current context onto each record (``unset`` when
    there is none: ``-`` in text, ``null`` in JSON)."""

    def __init__(self, unset: str | None) -> None:
        super().__init__()
        self.unset = unset

    def filter(self, record: logging.LogRecord) -> bool:
        rid, jid = request_id.get(), job_id.get()
        record.request_id = rid if rid != "-" else self.unset
        record.job_id = jid if jid != "-" else self.unset
        return True


def configure_logging(level: int | str = logging.INFO, log_format: LogFormat = "text") -> None:
    """Configure the root logger; safe to call again (it replaces its own handler)."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {log_format!r}")
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        if getattr(h, "_lipsync", False):
            root.removeHandler(h)
    handler = logging.StreamHandler()
    handler._lipsync = True  # type: ignore[attr-defined]
    if log_format == "json":
        handler.addFilter(_ContextFilter(unset=None))
        handler.setFormatter(JsonFormatter(list(_JSON_FIELDS), rename_fields=_JSON_RENAMES, timestamp="time",
                                           reserved_attrs=_JSON_SKIPPED, json_ensure_ascii=False))
        for name in _UVICORN:
            uvicorn_log = logging.getLogger(name)
            for h in list(uvicorn_log.handlers):
                uvicorn_log.removeHandler(h)
            uvicorn_log.propagate = True
    else:
        handler.addFilter(_ContextFilter(unset="-"))
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root.addHandler(handler)
    quiet_third_parties()


def json_enabled() -> bool:
    """Whether the entry point chose ``json``: records that read differently as one JSON
    line (the Performance Analysis table) ask this."""
    return any(getattr(h, "_lipsync", False) and isinstance(h.formatter, JsonFormatter)
               for h in logging.getLogger().handlers)


def quiet_third_parties() -> None:
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the hub
    for category, pattern in ((FutureWarning, r".*weight_norm.*"), (UserWarning, r".*TypedStorage.*"),
                              (DeprecationWarning, r".*"), (UserWarning, r".*stft.*"),
                              (UserWarning, r".*librosa.*"), (UserWarning, r".*numba.*")):
        warnings.filterwarnings("ignore", category=category, message=pattern)
