"""Media I/O with PyAV: probe a face input, stream its frames, read audio, write H.264/AAC mp4.

Everything a user can get wrong (missing file, not a video, no frames, no audio track, output
folder missing) raises :class:`service.errors.MediaError` with a one-line message naming the file.
"""
from __future__ import annotations

from .audio import read_audio
from .containers import IMAGE_SUFFIXES, as_frame_rate, is_image_path
from .encoders import choose_encoder, nvenc_available
from .frames import iter_frames, read_frame
from .images import read_image
from .probe import MediaInfo, probe
from .writer import VideoWriter, ensure_writable

__all__ = [
    "IMAGE_SUFFIXES",
    "MediaInfo",
    "VideoWriter",
    "as_frame_rate",
    "choose_encoder",
    "ensure_writable",
    "is_image_path",
    "iter_frames",
    "nvenc_available",
    "probe",
    "read_audio",
    "read_frame",
    "read_image",
]
