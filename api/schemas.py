"""Request and response bodies of the HTTP API (the JSON external checks read).

The schema is the contract: it says exactly which forms are accepted (URI schemes and
lengths, language-tag shape, box bounds), and every answer, errors included, has a declared
body. What only the running service can know (a bucket's existence, the languages of the
installed TTS voices) is refused with a declared 4xx error.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.storage.uris import MAX_BUCKET_COMPONENT, MAX_BUCKET_WITH_DOTS, MAX_OBJECT_NAME_BYTES

# The naming rules service/storage/uris.py enforces, so that a URI the schema allows is one the
# service parses (tests/test_openapi_contract.py checks the two agree). Bucket: 3-63 of
# [a-z0-9_-], or dot-separated parts of 1-63 and 222 in all; starting and ending with a letter
# or digit; not goog*, *google* or an IPv4 address. Only negative look-aheads: generating
# strings for a positive one takes Schemathesis minutes.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_BUCKET = (rf"(?!goog)(?![a-z0-9._-]*google)(?!{_OCTET}(\.{_OCTET}){{3}}/)"
           rf"([a-z0-9][a-z0-9_-]{{1,{MAX_BUCKET_COMPONENT - 2}}}[a-z0-9]"
           rf"|(?![a-z0-9._-]{{{MAX_BUCKET_WITH_DOTS + 1}}})[a-z0-9][a-z0-9_-]{{0,{MAX_BUCKET_COMPONENT - 1}}}"
           rf"(\.[a-z0-9_-]{{1,{MAX_BUCKET_COMPONENT}}})*\.[a-z0-9_-]{{0,{MAX_BUCKET_COMPONENT - 1}}}[a-z0-9])")
# Object: 1-1024 characters (the limit is 1024 bytes of UTF-8: longer non-ASCII names are a
# declared 422), no control characters, not '.' or '..', not a folder (ending in '/'), not
# under .well-known/acme-challenge/
_OBJECT = (rf"(?!\.\.?$)(?!\.well-known/acme-challenge/)"
           rf"[^\x00-\x1f\x7f]{{0,{MAX_OBJECT_NAME_BYTES - 1}}}[^\x00-\x1f\x7f/]")
STORAGE_URI = rf"^(gs://{_BUCKET}/{_OBJECT}|file://(localhost)?/[^\x00-\x1f\x7f]+)$"
MAX_URI = len("gs://") + MAX_BUCKET_WITH_DOTS + 1 + MAX_OBJECT_NAME_BYTES
LANGUAGE_TAG = r"^[a-zA-Z]{2,8}(-[a-zA-Z0-9]{1,8})*$"  # BCP 47 shape: ko, en-us, cmn-latn-pinyin
MAX_TEXT = 5000  # characters (TTS_MAX_CHARS default)
MAX_PIXEL = 16384


class LipVideoRequest(BaseModel):
    """The customer's request, plus optional knobs."""

    # Python's re: the URI pattern needs look-aheads, which pydantic's default engine lacks
    model_config = ConfigDict(regex_engine="python-re", json_schema_extra={"examples": [{
        "word": "안녕하세요", "user_video_gs": "gs://bucket/in.mp4",
        "output_video_gs": "gs://bucket/out.mp4", "tts_lang": "ko"}]})

    word: str = Field(description="Word or sentence to speak, in the user's voice", min_length=1,
                      max_length=MAX_TEXT)
    user_video_gs: str = Field(description="gs://bucket/object (or file:///path under LOCAL_STORAGE_ROOT) of the "
                               "user's video: mp4/mov, webm/mkv or avi, with the user speaking (the voice is "
                               "cloned from its sound)", pattern=STORAGE_URI, max_length=MAX_URI)
    output_video_gs: str = Field(description="Where the lip-synced mp4 goes (gs:// or file://); with "
                                 "OVERWRITE_OUTPUT=false it must not exist yet", pattern=STORAGE_URI,
                                 max_length=MAX_URI)
    tts_lang: str = Field(default="ko", pattern=LANGUAGE_TAG, max_length=35,
                          description="Language of the text (ko, en, ja, zh, es, fr, ...); the engine must "
                                      "have a voice for it (GET /health lists them per engine)")
    tts_engine: Literal["espeak-ng", "gtts"] | None = Field(
        default=None, description="TTS engine; default from settings (TTS_ENGINE)")
    resize_factor: int | None = Field(default=None, ge=1, le=8,
                                      description="Downscale frames before lip-sync (customer: 3)")
    face_box: tuple[int, int, int, int] | None = Field(
        default=None, description="(top, bottom, left, right) in pixels of the resized frame, top < bottom, "
                                  "left < right, inside the frame; skips face detection",
        json_schema_extra={"items": {"type": "integer", "minimum": 0, "maximum": MAX_PIXEL}})


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


class FaceDetectionReport(BaseModel):
    detector: str = Field(description="opencv, s3fd, or none when face_box was given")
    frames_checked: int
    frames_with_face: int
    box: list[int] | None = Field(description="(top, bottom, left, right) on the resized frame")


class LipVideoResponse(BaseModel):
    # Python's re: the URI pattern needs look-aheads, which pydantic's default engine lacks
    model_config = ConfigDict(regex_engine="python-re", json_schema_extra={"examples": [{
        "output_video_gs": "gs://bucket/out.mp4", "pipeline": "optimized", "duration_s": 1.2,
        "step_times": {"download": 0.12, "tts": 0.05, "voice_conversion": 0.31, "lipsync": 0.52, "encode": 0.18,
                       "upload": 0.04, "total": 1.08},
        "cache_hits": {"tts": False, "speaker_embedding": True, "face_boxes": True, "frames": True},
        "face_detection": {"detector": "s3fd", "frames_checked": 5, "frames_with_face": 5,
                           "box": [120, 310, 402, 560]},
        "request_id": "3f2a9c1e0b7d4a21", "job_id": "job_5b0c3f6e9d2a4f7e8c1b0a9d8e7f6a5b",
        "served_by": "render-7f9c:4121"}]})

    output_video_gs: str
    pipeline: Literal["optimized", "baseline"]
    duration_s: float = Field(description="Duration of the output video, seconds")
    step_times: StepTimes
    cache_hits: CacheHits
    face_detection: FaceDetectionReport | None = None
    request_id: str
    job_id: str | None = Field(default=None, description="the job that rendered it (GET /api/v1/jobs/{job_id})")
    served_by: str | None = Field(default=None, description="the process or Ray Serve replica that rendered it")


class ErrorBody(BaseModel):
    code: str = Field(description="stable error code (README: error table)")
    message: str = Field(description="what is wrong and what to do, in terms of what the caller sent")
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class PreloadResponse(BaseModel):
    status: str = "ok"
    message: str = "Models preloaded successfully"
    load_seconds: dict[str, float] = Field(default_factory=dict)
    warmup_seconds: dict[str, float] = Field(default_factory=dict)


class ReadyResponse(BaseModel):
    ready: bool
    reason: str | None = Field(default=None, description="why not ready: loading, or the preload's error")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    ready: bool
    device: str
    precision: dict[str, str] = Field(description="the format the models run in here: the optimized pipeline's "
                                      "Wav2Lip (LIPSYNC_PRECISION) and WavLM+FreeVC (VOICE_PRECISION), and "
                                      "the baseline's (fp32, or fp16 on a GPU), e.g. "
                                      "{'lipsync': 'bf16', 'voice': 'bf16', 'baseline': 'fp32'}")
    models_loaded: list[str]
    warm: bool
    preload_error: str | None
    requests_in_flight: int
    supported_languages: dict[str, list[str]]
    versions: dict[str, str]


class CacheStats(BaseModel):
    cache_size: int
    max_cache_size: int
    hits: int
    misses: int
    hit_rate: float
    total_requests: int


class CleanupResponse(BaseModel):
    status: Literal["ok"] = "ok"
    removed: int


class StatusResponse(BaseModel):
    status: Literal["ok"] = "ok"


def _error_example(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "request_id": "3f2a9c1e0b7d4a21"}}


ERROR_EXAMPLES: dict[int, tuple[str, dict[str, dict[str, object]]]] = {
    401: ("No API key, or an unknown one (API_KEYS_FILE set)", {
        "unauthorized": _error_example("unauthorized", "this service needs an API key: send the header "
                                       "'Authorization: Bearer <key>'")}),
    403: ("Bucket outside ALLOWED_BUCKETS, or a non-admin key on an admin route", {
        "bucket_not_allowed": _error_example("bucket_not_allowed", "gs://other/in.mp4: bucket 'other' is not one "
                                             "this service may use (ALLOWED_BUCKETS)"),
        "forbidden": _error_example("forbidden", "key 'client' may not use admin routes (ADMIN_KEYS)")}),
    404: ("Input object or a bucket does not exist", {
        "not_found": _error_example("not_found", "gs://bucket/in.mp4 not found: no such object in bucket 'bucket'")}),
    409: ("The output object exists and OVERWRITE_OUTPUT is false", {
        "output_exists": _error_example("output_exists", "gs://bucket/out.mp4 already exists and overwriting "
                                        "outputs is disabled")}),
    413: ("The input video is larger than MAX_DOWNLOAD_BYTES", {
        "input_too_large": _error_example("input_too_large", "gs://bucket/in.mp4 is 512.0 MB, over the 200.0 MB "
                                          "limit")}),
    422: ("The request cannot be rendered: malformed field, unsupported media, no face, no audio", {
        "invalid_request": _error_example("invalid_request", "user_video_gs: String should match pattern ..."),
        "unsupported_media": _error_example("unsupported_media", "gs://bucket/in.m3u8 is not a supported video: "
                                            "give an mp4/mov, webm/mkv or avi video"),
        "no_face": _error_example("no_face", "no face found in gs://bucket/in.mp4 (10 frames checked, 1 with a "
                                  "face): pass face_box"),
        "no_audio": _error_example("no_audio", "gs://bucket/in.mp4: the user video has no audio track; the voice "
                                   "is cloned from it")}),
    500: ("A bug on our side; the request id finds it in the log", {
        "internal_error": _error_example("internal_error", "internal error (RuntimeError); the request id "
                                         "identifies it in the server log")}),
    502: ("Cloud Storage refused the request", {
        "storage_denied": _error_example("storage_denied", "access denied to read gs://bucket/in.mp4")}),
    503: ("Not available now; retry after Retry-After seconds", {
        "server_busy": _error_example("server_busy", "server busy: 5 requests are running or waiting (limit 5)"),
        "models_unavailable": _error_example("models_unavailable", "the models are still loading; retry shortly"),
        "storage_unavailable": _error_example("storage_unavailable", "storage is unavailable"),
        "tts_unavailable": _error_example("tts_unavailable", "TTS service unreachable: timed out"),
        "interrupted": _error_example("interrupted", "the render was interrupted before it finished")}),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for these error statuses: the error body, with examples."""
    out: dict[int | str, dict[str, object]] = {}
    for status in statuses:
        description, examples = ERROR_EXAMPLES[status]
        out[status] = {"model": ErrorResponse, "description": description,
                       "content": {"application/json": {"examples": {k: {"value": v} for k, v in examples.items()}}}}
        if status == 401:
            out[status]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"},
                                                           "description": "the scheme to authenticate with"}}
        if status == 503:
            out[status]["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                      "description": "seconds to wait before retrying"}}
    return out
