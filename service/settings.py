"""The one settings object, read from the environment (and nothing else reads it).

Entry points build :class:`Settings` once and pass it down; library code takes explicit
arguments. Every field can be set with the upper-case environment variable of its name
(``WEIGHTS_DIR``, ``DEVICE``, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DeviceName = Literal["auto", "cpu", "cuda"]
FreeVCConfig = Literal["freevc", "freevc-s", "freevc-24"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    weights_dir: Path = Path("weights")
    """Folder with the official checkpoint files under their official names."""
    device: DeviceName = "auto"
    """``auto`` takes CUDA when a GPU is visible, else the CPU."""
    freevc_config: FreeVCConfig = "freevc"
    half_precision: bool = True
    """Run the models in fp16 on a GPU (never on the CPU, where it is slower)."""
    lipsync_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Wav2Lip's precision in the service. ``auto``: fp16 on a GPU (with HALF_PRECISION), fp32
    on the CPU. ``bf16`` on a CPU with native bf16 (AVX512-BF16/AMX) is ~4x faster and stays
    within the 1e-2 half-precision tolerance, but is no longer bit-faithful to the official
    paste (see bench/RESULTS.md)."""
    voice_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """WavLM's and FreeVC's precision in the optimized service. ``auto``: fp16 on a GPU (with
    HALF_PRECISION), fp32 on the CPU. ``bf16`` halves CPU conversion time; measured on
    generated weights it moves the waveform by 2 % of its mean level (max 3-6e-2, over the
    1e-2 bar, but ~18x less than two seeds of FreeVC's own prior sampling differ), so it is
    an option, not the default (bench/RESULTS.md)."""

    # ---- service ---------------------------------------------------------------------------
    use_optimized: bool = True
    """``POST /api/v1/lip-video`` runs the optimized pipeline (true) or the baseline (false)."""
    preload_models: bool = True
    """Load and warm the model bundle before the app reports ready."""
    max_waiting_requests: int = 4
    """Requests allowed to wait for the device behind the running one; more get 503."""
    resize_factor: int = 3
    """The customer's tuned Wav2Lip ``resize_factor`` for service requests."""
    face_strategy: Literal["static", "keyframe", "per-frame"] = "static"
    wav2lip_batch_size: int = 0
    """0: 16 on CPU, 128 on GPU."""
    x264_preset: str = "veryfast"
    work_dir: Path = Path("/tmp/lipsync-service")
    """Per-request temp folders and the input cache live here."""
    input_cache_entries: int = 16
    """Downloaded input videos (with their boxes and speaker embedding) kept per process."""
    frame_cache_mb: int = 1024
    """Memory for what repeat requests for a known input reuse: its decoded frames (after
    ``resize_factor``) and Wav2Lip's face-encoder outputs for them; 0 = off. A 5 s 1080p30
    input at resize 3 takes 104 MB of frames + 175 MB of fp32 features."""
    # ---- storage -----------------------------------------------------------------------------
    storage_emulator_host: str | None = None
    local_storage_root: Path | None = None
    gcp_project: str | None = None
    max_download_bytes: int = 200 * 1024 * 1024
    overwrite_output: bool = True
    # ---- voice -------------------------------------------------------------------------------
    tts_engine: str = "espeak-ng"
    tts_cache_dir: Path = Path("~/.cache/lipsync/tts")
    tts_cache_max_entries: int = 1000
    tts_cache_ttl_s: float = 7 * 24 * 3600
    tts_max_chars: int = 5000
    tts_max_parallel: int = 4
    tts_pause_s: float = 0.2
    tts_segment_chars: int = 200
    tts_gtts_url: str = "https://translate.google.com"
    tts_gtts_timeout_s: float = 10.0
    noise_scale: float = 1.0
    """FreeVC prior noise: 1.0 as the official convert.py samples; 0 is the deterministic mean path."""
    max_source_s: float = 120.0

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
    explicit = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if settings.lipsync_precision in explicit:
        return explicit[settings.lipsync_precision]
    return model_dtype(device, settings.half_precision)


def voice_dtype(device: torch.device, settings: Settings) -> torch.dtype:
    explicit = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if settings.voice_precision in explicit:
        return explicit[settings.voice_precision]
    return model_dtype(device, settings.half_precision)


def model_dtype(device: torch.device, half_precision: bool) -> torch.dtype:
    return torch.float16 if device.type == "cuda" and half_precision else torch.float32
