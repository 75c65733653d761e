"""Media I/O with PyAV: probe a face input, stream its frames, read audio, write H.264/AAC mp4.

Inputs are recognised by content and opened only from an allowlist of formats (:mod:`.sniff`).
Everything a user can get wrong (missing file, not a video, no frames, no audio track, output
folder missing) raises :class:`service.errors.MediaError` with a one-line message naming the file.
"""
from __future__ import annotations

from .audio import read_audio
from .containers import as_frame_rate
from .encoders import choose_encoder, nvenc_available
from .frames import iter_frames, read_frame
from .images import read_image
from .probe import MediaInfo, probe
from .sniff import Format, sniff_format
from .writer import VideoWriter, ensure_writable

__all__ = [
    "Format",
    "MediaInfo",
    "VideoWriter",
    "as_frame_rate",
    "choose_encoder",
    "ensure_writable",
    "iter_frames",
    "nvenc_available",
    "probe",
    "read_audio",
    "read_frame",
    "read_image",
    "sniff_format",
]
