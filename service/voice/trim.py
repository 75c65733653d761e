"""Leading/trailing silence trimming, numerically the same as ``librosa.effects.trim``.

FreeVC's ``convert.py`` trims the target speaker's audio with ``librosa.effects.trim(wav,
top_db=20)`` before the speaker embedding; librosa is not a dependency of the product, so this is
that algorithm in numpy, step for step (same frame view, same float32 arithmetic), which makes the
kept interval identical, not merely close:

    rms[f]  = sqrt(mean(y_pad[f*512 : f*512 + 2048] ** 2))   # y zero-padded by 1024 each side
    db[f]   = 10 log10(max(1e-10, rms[f]^2)) - 10 log10(max(1e-10, max(rms)^2))
    keep    = frames with db > -top_db
    start   = first kept frame * 512;  end = min(N, (last kept frame + 1) * 512)

Like librosa, the reference is the loudest frame, so an all-zero signal is *not* trimmed (every
frame is 0 dB below itself): callers that must reject silence check the absolute level with
:func:`peak_rms_dbfs` first.
"""
from __future__ import annotations

import numpy as np

FRAME_LENGTH = 2048   # samples per RMS frame (128 ms at 16 kHz), librosa's default
HOP_LENGTH = 512      # samples between frames (32 ms at 16 kHz)
AMIN = 1e-5           # amplitude floor of librosa.amplitude_to_db (1e-10 in power)
DEFAULT_TOP_DB = 20.0  # FreeVC convert.py


def frame_rms(samples: np.ndarray, frame_length: int = FRAME_LENGTH, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """RMS per frame of centred, zero-padded frames: samples [N] -> float32 [1 + N // hop].

    Equal to ``librosa.feature.rms(y=samples, frame_length, hop_length)[0]`` (``center=True``,
    ``pad_mode="constant"``).
    """
    y = np.asarray(samples)
    if y.ndim != 1:
        raise ValueError(f"frame_rms expects mono samples [N], got shape {y.shape}")
    half = frame_length // 2
    padded = np.pad(y, (half, half), mode="constant")
    # the same strided view librosa.util.frame builds, [frame_length, n_frames], so that
    # numpy reduces in the same order and the float32 sums agree bit for bit
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length].T
    power = np.mean(np.square(frames, dtype=np.float32), axis=-2)
    return np.sqrt(power)


def _db_below_max(rms: np.ndarray) -> np.ndarray:
    """Each frame's level in dB relative to the loudest frame (librosa ``amplitude_to_db``, ref=max)."""
    ref = np.max(rms)
    power = np.square(rms)
    db = 10.0 * np.log10(np.maximum(AMIN ** 2, power))
    db -= 10.0 * np.log10(np.maximum(AMIN ** 2, ref ** 2))
    return db


def trim_bounds(samples: np.ndarray, top_db: float = DEFAULT_TOP_DB, frame_length: int = FRAME_LENGTH,
                hop_length: int = HOP_LENGTH) -> tuple[int, int]:
    """The kept interval ``(start, end)`` in samples: ``librosa.effects.trim(...)[1]``.

    ``(0, 0)`` when no frame is within ``top_db`` of the loudest (only possible for an empty
    signal with the max reference).
    """
    y = np.asarray(samples)
    if y.ndim != 1:
        raise ValueError(f"trim expects mono samples [N], got shape {y.shape}")
    if y.shape[0] == 0:
        return 0, 0
    keep = np.flatnonzero(_db_below_max(frame_rms(y, frame_length, hop_length)) > -top_db)
    if keep.size == 0:
        return 0, 0
    start = int(keep[0]) * hop_length
    end = min(y.shape[0], (int(keep[-1]) + 1) * hop_length)
    return start, end


def trim_silence(samples: np.ndarray, top_db: float = DEFAULT_TOP_DB, frame_length: int = FRAME_LENGTH,
                 hop_length: int = HOP_LENGTH) -> np.ndarray:
    """Drop leading and trailing frames more than ``top_db`` dB below the loudest frame.

    samples [N] (any rate; the frame sizes are in samples) -> a view ``samples[start:end]``, the
    same array ``librosa.effects.trim(samples, top_db=top_db)[0]`` returns.
    """
    start, end = trim_bounds(samples, top_db, frame_length, hop_length)
    return np.asarray(samples)[start:end]


def peak_rms_dbfs(samples: np.ndarray, frame_length: int = FRAME_LENGTH, hop_length: int = HOP_LENGTH) -> float:
    """Level of the loudest RMS frame in dBFS (full scale = 1.0); ``-inf`` for digital silence."""
    y = np.asarray(samples)
    if y.shape[0] == 0:
        return float("-inf")
    peak = float(np.max(frame_rms(y, frame_length, hop_length)))
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")
