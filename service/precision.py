"""The number format each model runs in, chosen per machine (``auto``) or by name.

``auto`` is the fastest format whose effect is invisible (issue 16, measured by
``tests/test_precision_quality.py`` and in ``bench/RESULTS.md``): fp16 on a CUDA GPU (with
``HALF_PRECISION``), bf16 on a CPU that computes bf16 natively (AVX512-BF16 or AMX: oneDNN then
runs the convolutions and matmuls at 2-4x the fp32 rate), fp32 anywhere else (bf16 without
native support is emulated and slower than fp32). ``fp32`` is the faithful format: the
fidelity checks against the official code use it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "fp16")
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class CpuBf16:
    """What this CPU offers for bf16 arithmetic."""

    avx512_bf16: bool
    amx_bf16: bool

    @property
    def native(self) -> bool:
        return self.avx512_bf16 or self.amx_bf16

    def describe(self) -> str:
        units = [name for name, present in (("AMX-BF16", self.amx_bf16), ("AVX512-BF16", self.avx512_bf16))
                 if present]
        return "CPU has " + " and ".join(units) if units else "CPU has no native bf16 (AVX512-BF16/AMX)"


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = path.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


@lru_cache(maxsize=1)
def cpu_bf16() -> CpuBf16:
    """Detected once per process: the kernel's CPU flags, and for AVX512-BF16 also torch's own
    probe (what oneDNN will use; it answers where /proc/cpuinfo is missing)."""
    flags = _cpuinfo_flags()
    avx = "avx512_bf16" in flags
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if not avx and probe is not None:
        try:
            avx = bool(probe())
        except RuntimeError:  # a build without the probe's backend: the flags decide
            pass
    return CpuBf16(avx512_bf16=avx, amx_bf16="amx_bf16" in flags)


def resolve_precision(choice: str, device: torch.device, half_precision: bool = True,
                      cpu: CpuBf16 | None = None) -> torch.dtype:
    """The dtype for ``choice`` (``auto``/``fp32``/``bf16``/``fp16``) on ``device``."""
    if choice in DTYPES:
        return DTYPES[choice]
    if choice != "auto":
        raise ValueError(f"unknown precision {choice!r}: expected one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        return torch.float16 if half_precision else torch.float32
    if device.type == "cpu" and (cpu or cpu_bf16()).native:
        return torch.bfloat16
    return torch.float32


def explain(choice: str, device: torch.device, dtype: torch.dtype, half_precision: bool = True) -> str:
    """Why ``choice`` became ``dtype`` here, for the start-up log (``bf16 (auto: CPU has AVX512-BF16)``)."""
    name = NAMES.get(dtype, str(dtype))
    if choice != "auto":
        return f"{name} (set)"
    if device.type == "cuda":
        return f"{name} (auto: CUDA, HALF_PRECISION={'true' if half_precision else 'false'})"
    return f"{name} (auto: {cpu_bf16().describe()})"


def log_choice(device: torch.device, half_precision: bool = True, *,
               lipsync: tuple[str, torch.dtype] | None = None,
               voice: tuple[str, torch.dtype] | None = None, level: int = logging.INFO) -> str:
    """Log (and return) the precision line a process prints at start-up; each model is given as
    (the setting, the dtype it became). One-shot commands log it at DEBUG and print it in their
    report, so a bad input still gets a one-line error."""
    parts = []
    if lipsync is not None:
        parts.append(f"Wav2Lip {explain(lipsync[0], device, lipsync[1], half_precision)}")
    if voice is not None:
        parts.append(f"WavLM+FreeVC {explain(voice[0], device, voice[1], half_precision)}")
    line = f"precision on {device.type}: " + "; ".join(parts)
    log.log(level, line)
    return line
