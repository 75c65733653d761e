"""Writing speech as a 16-bit PCM WAV file that appears atomically or not at all."""
from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np

from service.types import Audio


def write_wav(path: str | os.PathLike[str], audio: Audio) -> Path:
    """Write ``audio`` as mono PCM16 WAV at its own sample rate; returns the path.

    Samples are scaled by 32768 and rounded, the inverse of ``read_audio``'s ``int16 / 32768``,
    so PCM16 input round-trips exactly; values beyond [-1, 1) are clipped (PCM16 cannot hold
    them). The file is written next to ``path`` under a temporary name and renamed onto it, so
    a reader never sees half a file and a failure leaves no file behind.
    """
    out = Path(path)
    pcm = np.clip(np.round(audio.samples.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(audio.sample_rate)
            w.writeframes(pcm.tobytes())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a wav is an ordinary output file
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
