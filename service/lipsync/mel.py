"""Wav2Lip's audio features: the mel spectrogram and the per-video-frame mel windows.

Constants are the official ``hparams.py`` values. The STFT is centred with *reflect*
padding, as in the librosa the model was trained with (modern librosa pads with zeros and
shifts the first and last two frames by up to 0.59).
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np

from models.melbank import mel_filterbank

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200  # 80 mel frames per second
WIN = 800
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS = 4.0  # symmetric normalisation to [-4, 4]
MEL_FPS = SAMPLE_RATE / HOP
WINDOW = 16  # mel frames per video frame's window (0.2 s)


@lru_cache(maxsize=1)
def _basis() -> np.ndarray:
    return mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, FMIN, FMAX)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    n = np.arange(WIN)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN)  # periodic, as scipy/librosa 'hann'


def wav2lip_mel(samples: np.ndarray) -> np.ndarray:
    """[80, 1 + N//200] float32 normalised mel of 16 kHz mono ``samples`` (float, [-1, 1])."""
    wav = np.asarray(samples, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0:
        raise ValueError(f"expected non-empty mono samples, got shape {wav.shape}")
    # pre-emphasis y[n] = x[n] - 0.97 x[n-1] (lfilter([1, -0.97], [1])), in float64 from here on
    x = wav.astype(np.float64)
    emph = np.empty_like(x)
    emph[0] = x[0]
    emph[1:] = x[1:] - PREEMPHASIS * x[:-1]
    padded = np.pad(emph, N_FFT // 2, mode="reflect")
    n_frames = 1 + (padded.size - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0]))
    mag = np.abs(np.fft.rfft(frames * _hann(), axis=1)).T  # [401, T]
    mel = _basis() @ mag
    db = 20.0 * np.log10(np.maximum(10 ** (MIN_LEVEL_DB / 20), mel)) - REF_LEVEL_DB
    norm = (2 * MAX_ABS) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS
    return np.clip(norm, -MAX_ABS, MAX_ABS).astype(np.float32)


def output_frame_count(num_samples: int, fps: float) -> int:
    """Video frames needed to cover all of the audio: ceil(duration · fps).

    The official code stops at the first window that would run past the mel (5.00 s of audio
    → 122 frames at 25 fps); we cover the whole audio instead.
    """
    fr = Fraction(fps).limit_denominator(1001 * 1000)
    return max(1, math.ceil(Fraction(num_samples, SAMPLE_RATE) * fr))


def window_starts(n_frames: int, fps: float, mel_frames: int) -> np.ndarray:
    """Start column of each video frame's 16-frame mel window.

    ``int(i * (80 / fps))`` exactly as official (same float operations, so the same
    truncation), clamped to the last full window: for every frame the official code writes
    this equals its choice, including its last-window special case; frames it drops get
    the last window again.
    """
    if mel_frames < WINDOW:
        raise ValueError(f"audio too short: {mel_frames} mel frames, need at least {WINDOW} "
                         f"(about {WINDOW / MEL_FPS:.2f} s)")
    step = 80.0 / fps
    return np.array([min(int(i * step), mel_frames - WINDOW) for i in range(n_frames)], dtype=np.int64)


def mel_windows(mel: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """[n, 1, 80, 16] float32 windows at ``starts``."""
    idx = starts[:, None] + np.arange(WINDOW)[None, :]
    return np.ascontiguousarray(mel[:, idx].transpose(1, 0, 2)[:, None])
