"""The one settings object, read from the environment (and nothing else reads it).

Entry points build :class:`Settings` once and pass it down; library code takes explicit
arguments. Every field can be set with the upper-case environment variable of its name
(``WEIGHTS_DIR``, ``DEVICE``, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .precision import Precision, resolve_precision

DeviceName = Literal["auto", "cpu", "cuda"]
FreeVCConfig = Literal["freevc", "freevc-s", "freevc-24"]
X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                     "veryslow", "placebo"]
CommaList = Annotated[frozenset[str], NoDecode]
"""``a,b,c`` in the environment (not JSON): blanks and empty items ignored."""


class SettingsError(ValueError):
    """A setting has a value the service cannot start with; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    weights_dir: Path = Path("weights")
    """Folder with the official checkpoint files under their official names."""
    device: DeviceName = "auto"
    """``auto`` takes CUDA when a GPU is visible, else the CPU."""
    freevc_config: FreeVCConfig = "freevc"
    half_precision: bool = True
    """Run the models in fp16 on a GPU (never on the CPU, where it is slower)."""
    lipsync_precision: Precision = "auto"
    """Wav2Lip's precision in the service. ``auto``: fp16 on a GPU (with HALF_PRECISION), bf16 on
    a CPU with native bf16 (AVX512-BF16 or AMX, detected at start-up and logged), fp32 elsewhere
    (``service/precision.py``). ``fp32`` is the faithful format the fidelity checks use; bf16
    differs from it by less than the eye sees (>= 40 dB in the mouth region, bench/RESULTS.md)."""
    voice_precision: Precision = "auto"
    """WavLM's and FreeVC's precision in the optimized service, chosen as LIPSYNC_PRECISION is.
    bf16 moves the waveform far less than two seeds of FreeVC's own prior sampling do, and keeps
    the speaker (embedding cosine >= 0.99 to fp32; bench/RESULTS.md)."""

    # ---- service ---------------------------------------------------------------------------
    use_optimized: bool = True
    """``POST /api/v1/lip-video`` runs the optimized pipeline (true) or the baseline (false)."""
    preload_models: bool = True
    """Load and warm the model bundle before the app reports ready."""
    max_waiting_requests: int = Field(4, ge=0, le=10_000)
    """Requests allowed to wait for the device behind the running one; more get 503."""
    resize_factor: int = Field(3, ge=1, le=8)
    """The customer's tuned Wav2Lip ``resize_factor`` for service requests."""
    face_strategy: Literal["static", "keyframe", "per-frame"] = "static"
    wav2lip_batch_size: int = Field(0, ge=0, le=4096)
    """0: 16 on CPU, 128 on GPU."""
    x264_preset: X264Preset = "veryfast"
    work_dir: Path = Path("/tmp/lipsync-service")
    """Per-request temp folders and the input cache live here."""
    input_cache_entries: int = Field(16, ge=1, le=100_000)
    """Downloaded input videos (with their boxes and speaker embedding) kept per process."""
    pack_weights: bool = True
    """CPU: run Wav2Lip's convolutions and WavLM's linears as prepacked oneDNN kernels with the
    activations fused (``models/onednn.py``): weights reordered once at start-up instead of on
    every call; Wav2Lip 4-13 % and WavLM's linears 5-45 % faster, equal to eager to float
    rounding (fp32: bit-identical for Wav2Lip). No effect on a GPU or in the baseline pipeline."""
    reuse_freed_memory: bool = True
    """Keep freed memory in the process for the next allocation instead of returning it to the
    kernel (glibc ``mallopt``: mmap threshold 32 MiB, no heap trimming, one arena): no page faults
    on every activation-sized tensor (a warm W-sentence: ~228,000 -> ~45), a few % faster renders
    on CPU; RSS stays at its peak between requests (``service/memory.py``)."""
    frame_cache_mb: int = Field(1024, ge=0)
    """Memory for what repeat requests for a known input reuse: its decoded frames (after
    ``resize_factor``) and Wav2Lip's face-encoder outputs for them; 0 = off. A 5 s 1080p30
    input at resize 3 takes 104 MB of frames + 175 MB of fp32 features."""
    log_format: Literal["text", "json"] = "text"
    """``text``: lines for a terminal (the Performance Analysis as a table). ``json``: one JSON
    object per line with ``severity``, ``message``, ``time``, ``logger``, ``request_id``,
    ``job_id`` (Cloud Logging reads them; the Docker image's default), the Performance
    Analysis's step times as fields (``service/logs.py``)."""
    ui_enabled: bool = True
    """``GET /`` serves the page to try the service (upload, word, progress, result); false: 404."""
    upload_store: str | None = None
    """Where ``POST /api/v1/uploads`` and the page's outputs go: a folder (default
    ``$LOCAL_STORAGE_ROOT/uploads``, else ``$WORK_DIR/uploads``; jobs read it as ``file://``,
    so it must lie under LOCAL_STORAGE_ROOT) or ``gs://bucket/prefix``."""
    # ---- storage -----------------------------------------------------------------------------
    storage_emulator_host: str | None = None
    local_storage_root: Path | None = None
    gcp_project: str | None = None
    max_download_bytes: int = Field(200 * 1024 * 1024, ge=1)
    overwrite_output: bool = True
    # ---- voice -------------------------------------------------------------------------------
    tts_engine: Literal["espeak-ng", "gtts"] = "espeak-ng"
    tts_cache_dir: Path = Path("~/.cache/lipsync/tts")
    tts_cache_max_entries: int = Field(1000, ge=1)
    tts_cache_ttl_s: float = Field(7 * 24 * 3600, gt=0)
    tts_max_chars: int = Field(5000, ge=1, le=1_000_000)
    tts_max_parallel: int = Field(4, ge=1, le=64)
    tts_pause_s: float = Field(0.2, ge=0, le=10)
    tts_segment_chars: int = Field(200, ge=20)
    tts_gtts_url: str = "https://translate.google.com"
    tts_gtts_timeout_s: float = Field(10.0, gt=0)
    noise_scale: float = Field(1.0, ge=0, le=10)
    """FreeVC prior noise: 1.0 as the official convert.py samples; 0 is the deterministic mean path."""
    max_source_s: float = Field(120.0, gt=0)

    # ---- trust -------------------------------------------------------------------------------
    api_keys_file: Path | None = None
    """Lines ``name:sha256-hex-of-key``; when set, every route but /health and /ready needs
    ``Authorization: Bearer <key>``. Unset: the API is open (a start-up warning says so)."""
    admin_keys: CommaList = frozenset()
    """Key names (from API_KEYS_FILE) allowed on the admin routes (preload, TTS cache cleanup)."""
    allowed_buckets: CommaList = frozenset()
    """Buckets input and output ``gs://`` URIs may name; empty: any (a start-up warning says so)."""
    shutdown_grace_s: float = Field(30.0, ge=0, le=3600)
    """On SIGTERM, renders in flight get this long to finish; then they stop at the next batch
    and fail as ``interrupted``, leaving nothing behind."""

    # ---- jobs --------------------------------------------------------------------------------
    job_store: str | None = None
    """Where job records live: a folder (default ``$WORK_DIR/jobs``) or ``gs://bucket/prefix``."""
    job_max_attempts: int = Field(3, ge=1, le=100)
    """Starts of a job a dying process may interrupt before it fails as ``interrupted``."""
    job_ttl_s: float = Field(7 * 24 * 3600, gt=0)
    """Finished job records are kept this long."""
    max_queued_jobs: int = Field(100, ge=1, le=1_000_000)
    """Jobs allowed to wait; more get 503 + Retry-After."""
    webhook_secret: str | None = Field(None, min_length=16)
    """HMAC-SHA256 key of the ``X-Lipsync-Signature`` header; jobs with a ``webhook_url`` need it."""
    webhook_allowed_hosts: CommaList = frozenset()
    """Hosts a webhook may name even when plain http or a private address (e.g. an internal
    receiver)."""

    cache_store: str | None = None
    """Speaker embeddings and face boxes per input generation, and TTS audio, shared by every
    process that renders: a folder (default ``$WORK_DIR/cache``) or ``gs://bucket/prefix``."""
    # ---- scale -------------------------------------------------------------------------------
    ray_address: str | None = None
    """``lipsync serve --ray`` joins this Ray cluster (``ray://host:10001`` or ``auto``);
    unset: it starts a local one."""

    def upload_location(self) -> str:
        """``UPLOAD_STORE``, or its default: ``$LOCAL_STORAGE_ROOT/uploads`` when file:// is on,
        else ``$WORK_DIR/uploads`` (which the runtime then lets jobs read as file://)."""
        if self.upload_store:
            return self.upload_store.rstrip("/")
        return str((self.local_storage_root or self.work_dir) / "uploads")

    @field_validator("admin_keys", "allowed_buckets", "webhook_allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        if isinstance(v, str):
            return frozenset(item.strip() for item in v.split(",") if item.strip())
        return v

    @field_validator("weights_dir", "work_dir", "tts_cache_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        # resolved once, here: later code must not depend on the working directory
        return v.expanduser().resolve()

    @field_validator("local_storage_root")
    @classmethod
    def _absolute_root(cls, v: Path | None) -> Path | None:
        return v.expanduser().resolve() if v is not None else None


def resolve_device(name: str) -> torch.device:
    """``auto``/``cpu``/``cuda`` → a torch device; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is visible to torch; "
                         "use --device cpu (or auto)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


def lipsync_dtype(device: torch.device, settings: Settings) -> torch.dtype:
    return resolve_precision(settings.lipsync_precision, device, settings.half_precision)


def voice_dtype(device: torch.device, settings: Settings) -> torch.dtype:
    return resolve_precision(settings.voice_precision, device, settings.half_precision)


def model_dtype(device: torch.device, half_precision: bool) -> torch.dtype:
    """The original scripts' choice (the baseline): fp16 on a GPU with HALF_PRECISION, else fp32."""
    return torch.float16 if device.type == "cuda" and half_precision else torch.float32


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (plus ``overrides``), or :class:`SettingsError` naming each
    bad variable and what it accepts: a bad value stops the start instead of failing every
    request later."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = []
        for err in e.errors():
            name = "_".join(str(p) for p in err["loc"][:1]).upper() or "settings"
            value = err.get("input")
            shown = f"={value!r}" if isinstance(value, (str, int, float)) else ""
            problems.append(f"{name}{shown}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from e
