"""Generated sample media for the demo, the benchmarks and the tests (nothing big is committed).

The face is frame 0 of ``tests/data/face_dev.mp4`` — a crop of ``skimage.data.astronaut()``
(public-domain NASA photo) — scaled to the requested size and gently animated (sway and
zoom), so every frame differs and detection has real work to do.
"""
from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..media import VideoWriter, read_audio
from ..types import Audio

FACE_SOURCE = Path(__file__).resolve().parents[1] / "assets" / "face_dev_frame0.png"


def face_image() -> np.ndarray:
    """The sample face, BGR uint8 960×540."""
    img = cv2.imread(str(FACE_SOURCE), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"sample face image missing: {FACE_SOURCE}")
    return img


def face_frames(width: int, height: int, n: int, fps: float) -> Iterator[np.ndarray]:
    """Yield ``n`` animated BGR frames of the sample face at ``width``×``height``."""
    base = cv2.resize(face_image(), (width, height), interpolation=cv2.INTER_LINEAR)
    for i in range(n):
        t = i / fps
        zoom = 1.0 + 0.015 * math.sin(2 * math.pi * t / 3.0)
        dx = 5 * width / 960 * math.sin(2 * math.pi * t / 2.0)
        dy = 3 * height / 540 * math.sin(2 * math.pi * t / 2.5)
        m = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, zoom)
        m[:, 2] += (dx, dy)
        yield cv2.warpAffine(base, m, (width, height), borderMode=cv2.BORDER_REFLECT)


def make_face_video(out: Path, seconds: float, width: int = 1920, height: int = 1080,
                    fps: float = 30.0, audio: Audio | None = None) -> Path:
    """Write an animated face video (H.264, optional AAC audio) of ``seconds`` length."""
    n = max(1, round(seconds * fps))
    with VideoWriter(out, width, height, Fraction(fps).limit_denominator(1001), audio=audio,
                     crf=18) as w:
        for frame in face_frames(width, height, n, fps):
            w.write(frame)
    return out


def espeak_speech(text: str, voice: str = "en-us", speed_wpm: int = 150) -> Audio:
    """Speech from the espeak-ng command (offline), as 16 kHz mono audio."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng is not installed (Debian package espeak-ng; `make` installs it)")
    with tempfile.TemporaryDirectory(prefix="lipsync-speech-") as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-v", voice, "-s", str(speed_wpm), "-w", str(wav), text], check=True,
                       capture_output=True)
        return read_audio(wav, 16000)


