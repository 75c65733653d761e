"""The log-mel spectrogram freevc-s feeds its own speaker encoder (``enc_spk``).

Equal to the official ``mel_processing.mel_spectrogram_torch(wav, 1280, 80, 16000, 320, 1280,
0.0, None, center=False)``, the call ``convert.py`` makes with the config's ``data`` values:
reflect padding of (n_fft - hop) / 2 samples on each side, an uncentred STFT with a periodic
Hann window, magnitude sqrt(re^2 + im^2 + 1e-6), a librosa Slaney mel filterbank and a natural
log clamped at 1e-5 (no further normalisation).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .melbank import mel_filterbank

SAMPLE_RATE = 16000
N_FFT = 1280           # 80 ms window
HOP = 320              # 20 ms: the same 50 frames/s as the WavLM content features
WIN = 1280
N_MELS = 80
FMIN = 0.0
FMAX = None            # sample_rate / 2
MAG_EPS = 1e-6         # added under the square root of the magnitude
LOG_FLOOR = 1e-5       # clamp before the log
_PAD = (N_FFT - HOP) // 2  # 480 samples of reflect padding on each side


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    return mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, FMIN, FMAX)


def num_frames(num_samples: int) -> int:
    """Mel frames for ``num_samples`` samples: (N - 320) // 320 + 1."""
    return (num_samples + 2 * _PAD - N_FFT) // HOP + 1


def mel_spectrogram(wav: torch.Tensor) -> torch.Tensor:
    """wav [B, N] float at 16 kHz (N > 480) -> log-mel [B, 80, (N - 320) // 320 + 1].

    Runs on ``wav``'s device and in its dtype (the Hann window and filterbank follow it).
    """
    if wav.dim() != 2 or not wav.is_floating_point():
        raise ValueError(f"mel_spectrogram expects a float waveform [B, N], got "
                         f"{tuple(wav.shape)} {wav.dtype}")
    if wav.shape[1] <= _PAD:
        raise ValueError(f"mel_spectrogram needs more than {_PAD} samples "
                         f"({_PAD / SAMPLE_RATE * 1000:.0f} ms at 16 kHz), got {wav.shape[1]}")
    y = torch.nn.functional.pad(wav.unsqueeze(1), (_PAD, _PAD), mode="reflect").squeeze(1)
    # the official code builds the window in float32 and then casts it: do the same
    window = torch.hann_window(WIN).to(dtype=wav.dtype, device=wav.device)
    spec = torch.stft(y, N_FFT, hop_length=HOP, win_length=WIN, window=window, center=False,
                      normalized=False, onesided=True, return_complex=True)
    spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + MAG_EPS)
    basis = torch.from_numpy(_mel_basis()).to(dtype=wav.dtype, device=wav.device)
    return torch.log(torch.clamp(torch.matmul(basis, spec), min=LOG_FLOOR))
