"""A finished render, told twice: the JSON the caller gets, and the Performance Analysis log."""
from __future__ import annotations

import logging
from typing import Any

from ..logs import json_enabled
from ..timing import format_table
from .base import LipVideoResult

log = logging.getLogger("service.performance")


def result_json(r: LipVideoResult, request_id: str) -> dict[str, Any]:
    """The synchronous success body (README; DESIGN §9), without ``job_id``."""
    return {"output_video_gs": r.output_uri, "pipeline": r.pipeline, "duration_s": round(r.duration_s, 3),
            "step_times": r.step_times, "cache_hits": r.cache_hits, "face_detection": r.face_detection,
            "request_id": request_id}


def performance_fields(r: LipVideoResult, key: str | None = None) -> dict[str, Any]:
    """The Performance Analysis block as fields of its log record (``extra=``), the names of
    the success JSON where it has them: ``event`` (``performance_analysis``, to filter on),
    ``pipeline``, ``step_times`` (seconds per step, ``total`` the wall clock), ``frames``,
    ``duration_s`` (of the video), ``input_bytes``, ``output_bytes``, ``cache_hits``
    (cache → hit), ``face_detection`` (or ``None``) and ``api_key`` (its name, ``None`` when
    keys are off)."""
    return {"event": "performance_analysis", "pipeline": r.pipeline,
            "step_times": {k: round(v, 4) for k, v in r.step_times.items()}, "frames": r.frames,
            "duration_s": round(r.duration_s, 3), "input_bytes": r.input_bytes, "output_bytes": r.output_bytes,
            "cache_hits": dict(r.cache_hits), "face_detection": r.face_detection, "api_key": key}


def log_performance(r: LipVideoResult, key: str | None = None) -> None:
    """One "Performance Analysis" record: step times, sizes, caches, face detection.

    Its fields (:func:`performance_fields`) ride on the record in both formats; the message is
    the table in text logs and one summary line in JSON logs, where the fields carry the rest.
    """
    fields = performance_fields(r, key)
    if json_enabled():
        log.info("Performance Analysis (%s): %.3f s total, %d frames", r.pipeline, r.step_times["total"],
                 r.frames, extra=fields)
        return
    steps = {k: v for k, v in r.step_times.items() if k != "total"}
    hits = ", ".join(f"{k}={'hit' if v else 'miss'}" for k, v in r.cache_hits.items())
    table = format_table(steps, r.step_times["total"], f"Performance Analysis ({r.pipeline})")
    face = r.face_detection or {}
    log.info("\n%s\ninput %.1f MB, output %.1f MB, %d frames, %.2f s video; caches: %s; key %s\n"
             "face detection: %s detector, %s frames checked, %s with a face, box %s", table,
             r.input_bytes / 1e6, r.output_bytes / 1e6, r.frames, r.duration_s, hits, key or "-",
             face.get("detector", "-"), face.get("frames_checked", "-"), face.get("frames_with_face", "-"),
             face.get("box", "-"), extra=fields)
