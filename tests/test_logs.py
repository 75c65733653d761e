"""LOG_FORMAT: JSON lines a platform reads (Cloud Logging), and the text lines people read."""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from service.logs import configure_logging, job_id, request_id
from service.pipelines.base import LipVideoResult
from service.pipelines.report import log_performance
from service.settings import SettingsError, load_settings
from service.timing import format_table

_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")
# RFC 3339 date-time: full date, "T", time with optional fraction, then Z or a numeric offset
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after each test."""
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    uvicorn = {n: (logging.getLogger(n).propagate, list(logging.getLogger(n).handlers)) for n in _UVICORN}
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, (propagate, handlers) in uvicorn.items():
        logging.getLogger(name).propagate = propagate
        logging.getLogger(name).handlers[:] = handlers


def _result() -> LipVideoResult:
    return LipVideoResult(
        output_uri="gs://out/a.mp4", pipeline="optimized", duration_s=2.5,
        step_times={"download": 0.12, "tts": 0.34, "voice_conversion": 1.5, "lipsync": 2.25, "encode": 0.8,
                    "upload": 0.05, "total": 4.5},
        cache_hits={"tts": True, "speaker_embedding": False, "face_boxes": True, "frames": False},
        input_bytes=1_500_000, output_bytes=750_000, frames=62,
        face_detection={"detector": "s3fd", "frames_checked": 5, "frames_with_face": 5, "box": [10, 90, 20, 80]})


def _json_lines(err: str) -> list[dict[str, object]]:
    lines = [line for line in err.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line one JSON object, or this fails


def test_json_lines_carry_severity_time_logger_and_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.DEBUG, log_format="json")
    log = logging.getLogger("service.example")
    rid, jid = request_id.set("req-1"), job_id.set("job-1")
    try:
        log.debug("a detail")
        log.info("rendering %s", "ça va")  # non-ASCII stays readable
        log.warning("slow")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
        log.critical("down")
    finally:
        job_id.reset(jid)
        request_id.reset(rid)
    log.info("outside any request")
    records = _json_lines(capsys.readouterr().err)

    assert [r["severity"] for r in records] == ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "INFO"]
    assert [r["message"] for r in records][:2] == ["a detail", "rendering ça va"]
    for r in records[:5]:
        assert r["logger"] == "service.example"
        assert (r["request_id"], r["job_id"]) == ("req-1", "job-1")
    assert (records[5]["request_id"], records[5]["job_id"]) == (None, None)
    for r in records:
        assert isinstance(r["time"], str) and _RFC3339.match(r["time"]), r["time"]
        stamp = datetime.fromisoformat(r["time"])
        assert stamp.utcoffset() == timedelta(0)
        assert {"levelname", "name", "asctime"}.isdisjoint(r)  # renamed, not duplicated
    assert "RuntimeError: boom" in str(records[3]["exc_info"])


def test_json_performance_analysis_carries_step_times_as_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(log_format="json")
    token = job_id.set("job-7")
    try:
        log_performance(_result(), key="acme")
    finally:
        job_id.reset(token)
    (record,) = _json_lines(capsys.readouterr().err)

    assert record["severity"] == "INFO" and record["logger"] == "service.performance"
    assert record["job_id"] == "job-7"
    assert record["event"] == "performance_analysis"
    assert record["message"] == "Performance Analysis (optimized): 4.500 s total, 62 frames"
    assert record["step_times"] == {"download": 0.12, "tts": 0.34, "voice_conversion": 1.5, "lipsync": 2.25,
                                    "encode": 0.8, "upload": 0.05, "total": 4.5}
    assert record["pipeline"] == "optimized"
    assert (record["frames"], record["duration_s"]) == (62, 2.5)
    assert (record["input_bytes"], record["output_bytes"]) == (1_500_000, 750_000)
    assert record["cache_hits"] == {"tts": True, "speaker_embedding": False, "face_boxes": True, "frames": False}
    assert record["face_detection"] == {"detector": "s3fd", "frames_checked": 5, "frames_with_face": 5,
                                        "box": [10, 90, 20, 80]}
    assert record["api_key"] == "acme"


def test_text_mode_keeps_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(log_format="text")
    token = request_id.set("req-2")
    try:
        log_performance(_result(), key="acme")
    finally:
        request_id.reset(token)
    err = capsys.readouterr().err

    r = _result()
    table = format_table({k: v for k, v in r.step_times.items() if k != "total"}, 4.5,
                         "Performance Analysis (optimized)")
    first, rest = err.split("\n", 1)
    assert re.match(r"^\S+ \S+ INFO \[req-2\] service\.performance: $", first), first
    assert rest == (f"{table}\ninput 1.5 MB, output 0.8 MB, 62 frames, 2.50 s video; caches: tts=hit, "
                    "speaker_embedding=miss, face_boxes=hit, frames=miss; key acme\n"
                    "face detection: s3fd detector, 5 frames checked, 5 with a face, box [10, 90, 20, 80]\n")
    assert "lipsync" in table and "total (wall)" in table


def test_text_mode_marks_missing_ids_with_a_dash(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(log_format="text")
    logging.getLogger("service.example").warning("no request here")
    assert re.search(r" WARNING \[-\] service\.example: no request here$", capsys.readouterr().err.strip())


def test_json_mode_routes_uvicorn_loggers_through_it(capsys: pytest.CaptureFixture[str]) -> None:
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.StreamHandler())  # what uvicorn's own log config gives it
    access.propagate = False
    access.setLevel(logging.INFO)  # uvicorn's default (an in-process server earlier may have set another)
    access.disabled = False
    configure_logging(log_format="json")
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/health", "1.1", 200)
    (record,) = _json_lines(capsys.readouterr().err)
    assert record["logger"] == "uvicorn.access" and record["severity"] == "INFO"
    assert record["message"] == '127.0.0.1:1 - "GET /health HTTP/1.1" 200'


def test_a_bad_log_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="xml"):
        configure_logging(log_format="xml")  # type: ignore[arg-type]
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        load_settings()
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert load_settings().log_format == "json"
