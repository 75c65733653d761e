"""What a pipeline takes and returns: the same for the optimized and the baseline service."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

STEPS = ("download", "tts", "voice_conversion", "lipsync", "encode", "upload", "total")
CACHES = ("tts", "speaker_embedding", "face_boxes", "frames")


@dataclass(frozen=True)
class LipVideoJob:
    """One request: speak ``text`` in the user's voice with the user's face."""

    text: str
    lang: str
    input_uri: str
    output_uri: str
    request_id: str = "-"
    tts_engine: str | None = None
    resize_factor: int | None = None
    face_box: tuple[int, int, int, int] | None = None
    """(top, bottom, left, right) on the resized frame: skips detection."""


@dataclass
class LipVideoResult:
    output_uri: str
    pipeline: str
    duration_s: float
    step_times: dict[str, float]
    """Seconds per step in :data:`STEPS`. ``encode`` runs in parallel with ``lipsync`` in the
    optimized pipeline (it is the encoder thread's busy time), so steps can sum to more
    than ``total``."""
    cache_hits: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(CACHES, False))
    input_bytes: int = 0
    output_bytes: int = 0
    frames: int = 0
    face_detection: dict[str, object] | None = None
    """``{"detector", "frames_checked", "frames_with_face", "box"}`` (see ``service.face``)."""


class Pipeline(Protocol):
    name: str

    def run(self, job: LipVideoJob, should_stop: Callable[[], bool] | None = None,
            progress: Callable[[str, float], None] | None = None) -> LipVideoResult:
        """Run the whole job synchronously (callers run it off the event loop). Once
        ``should_stop()`` is true the job stops at the next step or batch with
        :class:`service.errors.InterruptedJobError`, leaving nothing behind. ``progress``
        hears ``(step, fraction)``: each step entered, and the lip-sync frames done."""
        ...
