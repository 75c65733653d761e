"""Slaney-style mel filterbanks and a reflect-padded STFT magnitude, without librosa.

The official Wav2Lip, FreeVC and resemblyzer code build their filterbanks with
``librosa.filters.mel`` (Slaney mel scale, Slaney area normalisation) and pad their STFTs in
*reflect* mode (the default of the librosa they were trained with). These functions
reproduce both so ``models/`` needs only torch and numpy.
"""
from __future__ import annotations

import math

import numpy as np
import torch

_F_SP = 200.0 / 3  # Slaney scale: linear below 1 kHz, 3 mels per 200 Hz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    log_part = _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log_part, mel)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = _F_SP * mel
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log_part, hz)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """[n_mels, 1 + n_fft//2] float32 weights, equal to ``librosa.filters.mel`` defaults."""
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, fft_freqs.size), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, None]
    return weights


def stft_magnitude(wav: torch.Tensor, n_fft: int, hop: int, win: int | None = None,
                   power: float = 1.0) -> torch.Tensor:
    """|STFT|**power of ``wav`` [..., N], centred with reflect padding, periodic Hann window.

    Returns [..., 1 + n_fft//2, 1 + N//hop] in the input's dtype.
    """
    win = n_fft if win is None else win
    window = torch.hann_window(win, periodic=True, dtype=wav.dtype, device=wav.device)
    spec = torch.stft(wav, n_fft=n_fft, hop_length=hop, win_length=win, window=window,
                      center=True, pad_mode="reflect", return_complex=True)
    mag = spec.abs()
    return mag if power == 1.0 else mag.pow(power)
