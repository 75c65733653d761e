"""Typed values passed between pipeline steps."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Audio:
    """Mono audio: ``samples`` float32 [N] in [-1, 1] at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"Audio samples must be 1-D (mono), got shape {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate

    def expect_rate(self, rate: int, what: str) -> None:
        """Each step checks the rate it was built for instead of silently mis-reading audio."""
        if self.sample_rate != rate:
            raise ValueError(f"{what} needs {rate} Hz audio, got {self.sample_rate} Hz; resample first")


@dataclass(frozen=True)
class FaceBox:
    """A face rectangle in pixel rows/columns of a frame: ``frame[top:bottom, left:right]``."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def clipped(self, height: int, width: int) -> FaceBox:
        return FaceBox(max(0, self.top), min(height, self.bottom), max(0, self.left), min(width, self.right))
