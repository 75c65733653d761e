"""Request and response bodies of the HTTP API (the JSON external checks read)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LipVideoRequest(BaseModel):
    """The customer's request, plus optional knobs."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "word": "안녕하세요", "user_video_gs": "gs://bucket/in.mp4",
        "output_video_gs": "gs://bucket/out.mp4", "tts_lang": "ko"}]})

    word: str = Field(description="Word or sentence to speak, in the user's voice", min_length=1)
    user_video_gs: str = Field(description="gs:// (or file:// under LOCAL_STORAGE_ROOT) URI of the user's video")
    output_video_gs: str = Field(description="Where the lip-synced mp4 goes (gs:// or file://)")
    tts_lang: str = Field(default="ko", description="Language code of the text (ko, en, ja, zh, es, fr, ...)")
    tts_engine: str | None = Field(default=None, description="TTS engine (espeak-ng, gtts); default from settings")
    resize_factor: int | None = Field(default=None, ge=1, le=8,
                                      description="Downscale frames before lip-sync (customer: 3)")
    face_box: tuple[int, int, int, int] | None = Field(
        default=None, description="(top, bottom, left, right) on the resized frame; skips face detection")


class StepTimes(BaseModel):
    download: float
    tts: float
    voice_conversion: float
    lipsync: float
    encode: float
    upload: float
    total: float


class CacheHits(BaseModel):
    tts: bool
    speaker_embedding: bool
    face_boxes: bool
    frames: bool


class LipVideoResponse(BaseModel):
    output_video_gs: str
    pipeline: str = Field(description="optimized or baseline")
    duration_s: float = Field(description="Duration of the output video, seconds")
    step_times: StepTimes
    cache_hits: CacheHits
    request_id: str


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class PreloadResponse(BaseModel):
    status: str = "ok"
    message: str = "Models preloaded successfully"
    load_seconds: dict[str, float] = Field(default_factory=dict)
    warmup_seconds: dict[str, float] = Field(default_factory=dict)
