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

    @field_validator("weights_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        # resolved once, here: later code must not depend on the working directory
        return v.expanduser().resolve()


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


def model_dtype(device: torch.device, half_precision: bool) -> torch.dtype:
    return torch.float16 if device.type == "cuda" and half_precision else torch.float32
