"""Per-input-video cache of the optimized pipeline, keyed by the object's generation.

For a given input object (its GCS generation, or the file's hash for ``file://``) nothing
about it ever changes: its downloaded bytes, its audio (the user's voice), the speaker
embedding of that voice, its face boxes and its decoded frames. A repeat request for the
same video skips the download, the audio decode, the embedding, the face detection and (as
far as the frame budget allows) the video decode.
"""
from __future__ import annotations

import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..lipsync.frame_memo import FrameMemo
from ..types import Audio, FaceBox


@dataclass
class InputEntry:
    key: str
    video: Path
    """Local copy of the input object (owned by the cache)."""
    size: int
    reference: Audio | None = None
    embedding: np.ndarray | None = None
    boxes: dict[tuple[object, ...], list[FaceBox]] = field(default_factory=dict)
    """Face boxes per (resize_factor, strategy, detector, pads) combination."""
    frames: dict[int, FrameMemo] = field(default_factory=dict)
    """Decoded frames per resize factor."""

    def release(self) -> None:
        for memo in self.frames.values():
            memo.release()
        self.frames.clear()


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

    def __len__(self) -> int:
        return len(self._entries)
