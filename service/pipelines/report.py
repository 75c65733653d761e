"""A finished render, told twice: the JSON the caller gets, and the Performance Analysis log."""
from __future__ import annotations

import logging
from typing import Any

from ..timing import format_table
from .base import LipVideoResult

log = logging.getLogger("service.performance")


def result_json(r: LipVideoResult, request_id: str) -> dict[str, Any]:
    """The synchronous success body (README; DESIGN §9), without ``job_id``."""
    return {"output_video_gs": r.output_uri, "pipeline": r.pipeline, "duration_s": round(r.duration_s, 3),
            "step_times": r.step_times, "cache_hits": r.cache_hits, "face_detection": r.face_detection,
            "request_id": request_id}


def log_performance(r: LipVideoResult, key: str | None = None) -> None:
    """One "Performance Analysis" block: step times, sizes, caches, face detection."""
    steps = {k: v for k, v in r.step_times.items() if k != "total"}
    hits = ", ".join(f"{k}={'hit' if v else 'miss'}" for k, v in r.cache_hits.items())
    table = format_table(steps, r.step_times["total"], f"Performance Analysis ({r.pipeline})")
    face = r.face_detection or {}
    log.info("\n%s\ninput %.1f MB, output %.1f MB, %d frames, %.2f s video; caches: %s; key %s\n"
             "face detection: %s detector, %s frames checked, %s with a face, box %s", table,
             r.input_bytes / 1e6, r.output_bytes / 1e6, r.frames, r.duration_s, hits, key or "-",
             face.get("detector", "-"), face.get("frames_checked", "-"), face.get("frames_with_face", "-"),
             face.get("box", "-"))
