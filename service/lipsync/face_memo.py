"""Wav2Lip face-encoder outputs kept between requests for the same input video.

Wav2Lip's face encoder sees only the face crop (the masked crop and the reference crop of
the same frame), never the audio, so for a given input frame and box its seven outputs (the
U-Net skips) are the same in every request. They are ~8 % of the generator's time; a repeat
request for a known video reuses them and runs only the audio encoder and the decoder. One
frame's skips take 1.16 MB in fp32 (0.58 MB in bf16), charged to the same
:class:`MemoryBudget` as the decoded frames.
"""
from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence

import torch

from .frame_memo import MemoryBudget

FACE_FEATURES_PER_FRAME = 290_816
"""Values in one frame's skips: 96²·16 + 48²·32 + 24²·64 + 12²·128 + 6²·256 + 3²·512 + 512."""
FrameKey = Hashable
"""What decides a frame's crop: (source frame index, face box)."""


class FaceFeatureMemo:
    """Per-frame face-encoder outputs, looked up and stored a batch at a time."""

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self._skips: dict[FrameKey, list[torch.Tensor]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._skips)

    def lookup(self, keys: Sequence[FrameKey]) -> list[torch.Tensor] | None:
        """The batched skips for ``keys`` when every frame is known, else None."""
        with self._lock:
            found = [self._skips.get(k) for k in keys]
        if any(f is None for f in found):
            self.misses += len(keys)
            return None
        self.hits += len(keys)
        return [torch.cat([f[level] for f in found]).contiguous(memory_format=torch.channels_last)  # type: ignore[index]
                for level in range(len(found[0]))]  # type: ignore[arg-type]

    def store(self, keys: Sequence[FrameKey], skips: Sequence[torch.Tensor]) -> None:
        """Keep each frame's slice of a batch's skips, while the budget allows."""
        per_frame = sum(s[0].numel() * s.element_size() for s in skips)
        with self._lock:
            for i, key in enumerate(keys):
                if key in self._skips:
                    continue
                if not self._budget.take(per_frame):
                    return
                self._skips[key] = [s[i:i + 1].clone() for s in skips]
                self._bytes += per_frame

    def release(self) -> None:
        with self._lock:
            self._skips.clear()
            self._budget.give(self._bytes)
            self._bytes = 0
