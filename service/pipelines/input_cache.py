"""Per-input-video cache of the optimized pipeline, keyed by the object's generation.

For a given input object (its GCS generation, or the file's hash for ``file://``) nothing
about it ever changes: its downloaded bytes, its audio (the user's voice), the speaker
embedding of that voice, its face boxes, its decoded frames and Wav2Lip's face-encoder
outputs for them. A repeat request for the same video skips the download, the audio decode,
the embedding, the face detection and (as far as the memory budget allows) the video decode
and the face encoder.
"""
from __future__ import annotations

import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..lipsync.engine import BoxPlan
from ..lipsync.face_memo import FaceFeatureMemo
from ..lipsync.frame_memo import FrameMemo, MemoryBudget
from ..media import MediaInfo
from ..types import Audio


@dataclass
class InputEntry:
    key: str
    video: Path
    """Local copy of the input object (owned by the cache)."""
    size: int
    frame_count: int = 0
    """Frames in the input (the container's count; an estimate for some formats)."""
    width: int = 0
    height: int = 0
    media: MediaInfo | None = None
    """What the probe found (kind, audio track, size), for the checks of each request."""
    reference: Audio | None = None
    embedding: np.ndarray | None = None
    boxes: dict[tuple[object, ...], BoxPlan] = field(default_factory=dict)
    """Face boxes (and what detection found) per (resize_factor, strategy, detector, pads)."""
    frames: dict[int, FrameMemo] = field(default_factory=dict)
    """Decoded frames per resize factor."""
    faces: dict[int, FaceFeatureMemo] = field(default_factory=dict)
    """Wav2Lip face-encoder outputs per resize factor (keyed inside by frame and box)."""

    def release(self) -> None:
        for memo in [*self.frames.values(), *self.faces.values()]:
            memo.release()
        self.frames.clear()
        self.faces.clear()


class InputCache:
    """A bounded LRU of :class:`InputEntry`, with their files under ``root``."""

    def __init__(self, root: Path, max_entries: int = 16) -> None:
        self.root = root
        self.max_entries = max_entries
        self._entries: OrderedDict[str, InputEntry] = OrderedDict()
        self._lock = threading.Lock()
        shutil.rmtree(root, ignore_errors=True)  # files of a previous process are not indexed
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(uri: str, generation: str) -> str:
        return f"{uri}#{generation}"

    def get(self, key: str) -> InputEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def folder_for(self, key: str) -> Path:
        import hashlib

        path = self.root / hashlib.sha256(key.encode()).hexdigest()[:24]
        path.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, entry: InputEntry) -> None:
        with self._lock:
            self._entries[entry.key] = entry
            self._entries.move_to_end(entry.key)
            while len(self._entries) > self.max_entries:
                _, old = self._entries.popitem(last=False)
                old.release()
                shutil.rmtree(old.video.parent, ignore_errors=True)

    def free_memory(self, budget: MemoryBudget, need: int, keep: InputEntry) -> None:
        """Release the in-memory frames/features of the least recently used inputs (never
        ``keep``'s) until ``need`` more bytes fit in ``budget``: the memory goes to the videos
        being asked for now, not to the first ones ever seen."""
        with self._lock:
            older = [e for e in self._entries.values() if e is not keep]
        for entry in older:
            if budget.used + need <= budget.limit:
                return
            entry.release()

    def __len__(self) -> int:
        return len(self._entries)
