"""GE2E speaker encoder (d-vector): resemblyzer 0.1.4's ``VoiceEncoder`` = FreeVC's ``speaker_encoder``.

A 3-layer LSTM (40 -> 256) reads 160-frame (1.6 s) windows of a 40-band power mel
spectrogram; the last layer's final hidden state goes through ``linear`` + ReLU and is
L2-normalised. An utterance embedding is the re-normalised mean of its partial embeddings.

The mel is padded in *reflect* mode, as the librosa FreeVC pinned (0.8.1) did and the
weights were trained with; resemblyzer under modern librosa pads with zeros instead and misses
the reference by ~1e-4.

Weights: ``load_speaker_encoder(None)`` reads the ``pretrained.pt`` packaged inside the
installed ``resemblyzer`` wheel (found without importing the package, whose ``webrtcvad``
dependency does not import here); a path reads a ``{"model_state": ...}`` file such as FreeVC's
``pretrained_bak_5805000.pt`` (a different training step, same layout).

``preprocess_wav`` (volume normalisation + webrtcvad trimming) is not provided: FreeVC's
conversion path calls ``embed_utterance`` on the trimmed wav directly.
"""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._checkpoint import check_state_dict, load_into, pick_state_dict, read_checkpoint
from .errors import ModelLoadError
from .melbank import mel_filterbank, stft_magnitude

WHAT = "speaker encoder"

# resemblyzer hparams
SAMPLING_RATE = 16000       # Hz
MEL_WINDOW = 400            # samples (25 ms); also n_fft
MEL_HOP = 160               # samples (10 ms)
MEL_CHANNELS = 40           # Slaney mel bands, 0..8 kHz
HIDDEN_SIZE = 256
NUM_LAYERS = 3
EMBEDDING_SIZE = 256
PARTIAL_FRAMES = 160        # frames per partial utterance (1.6 s)
RATE = 1.3                  # partial utterances per second
MIN_COVERAGE = 0.75         # the last partial is kept only if it is at least this full

PACKAGE = "resemblyzer"
PACKAGED_FILE = "pretrained.pt"
STATE_KEY = "model_state"


def _mel_basis() -> np.ndarray:
    """Filterbank [MEL_CHANNELS, 1 + MEL_WINDOW // 2] float32.

    Equal to ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)`` (Slaney scale and norm).
    """
    return mel_filterbank(SAMPLING_RATE, MEL_WINDOW, MEL_CHANNELS)


# A numpy constant, not a buffer: a buffer would have to be in the checkpoint (strict keys)
# or be non-persistent, and non-persistent buffers stay on the meta device after loading.
MEL_BASIS = _mel_basis()


def partial_slices(n_samples: int, rate: float = RATE,
                   min_coverage: float = MIN_COVERAGE) -> list[slice]:
    """Mel-frame ranges of the partial utterances of an ``n_samples``-long wav (resemblyzer's rule).

    Partials are ``PARTIAL_FRAMES`` long and start every ``round(SAMPLING_RATE / rate / MEL_HOP)``
    frames (77 at rate 1.3) while ``start < max(1, n_frames - PARTIAL_FRAMES + step + 1)`` with
    ``n_frames = ceil((n_samples + 1) / MEL_HOP)``. The last one is dropped when it covers less
    than ``min_coverage`` of its samples, unless it is the only one. Sample range of a partial:
    ``[start * MEL_HOP, stop * MEL_HOP)``; it may run past the wav (the caller zero-pads).
    """
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    n_frames = math.ceil((n_samples + 1) / MEL_HOP)
    # np.round, not round(): resemblyzer rounds with numpy (half to even, like Python 3's round)
    frame_step = int(np.round(SAMPLING_RATE / rate / MEL_HOP))
    if not 0 < frame_step <= PARTIAL_FRAMES:
        raise ValueError(f"rate {rate} gives a step of {frame_step} frames; it must be in "
                         f"1..{PARTIAL_FRAMES} (rate >= {SAMPLING_RATE / (MEL_HOP * PARTIAL_FRAMES)})")
    n_starts = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    slices = [slice(i, i + PARTIAL_FRAMES) for i in range(0, n_starts, frame_step)]
    last = slices[-1]
    coverage = (n_samples - last.start * MEL_HOP) / (PARTIAL_FRAMES * MEL_HOP)
    if coverage < min_coverage and len(slices) > 1:
        slices.pop()
    return slices


class SpeakerEncoder(nn.Module):
    """resemblyzer ``VoiceEncoder``: mels [B, T, 40] -> unit-norm, non-negative embeddings [B, 256].

    ``similarity_weight`` / ``similarity_bias`` belong to the GE2E training loss; they are kept
    so checkpoints load strictly, and are not used at inference.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(MEL_CHANNELS, HIDDEN_SIZE, NUM_LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN_SIZE, EMBEDDING_SIZE)
        self.similarity_weight = nn.Parameter(torch.tensor([10.0]))
        self.similarity_bias = nn.Parameter(torch.tensor([-5.0]))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """mels [B, T, MEL_CHANNELS] power mel (no log) -> [B, EMBEDDING_SIZE], L2-normalised."""
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.norm(raw, dim=1, keepdim=True)

    @staticmethod
    def mel_spectrogram(wav: torch.Tensor) -> torch.Tensor:
        """wav [N] float at 16 kHz -> power mel [1 + N // MEL_HOP, MEL_CHANNELS] float32.

        Equal to ``librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160,
        n_mels=40, pad_mode="reflect")`` (transposed). The STFT runs in float64 like librosa's
        (its float32 frames meet a float64 window) and is rounded to float32 before squaring and
        the filterbank, so the result agrees with librosa to float32 rounding.
        """
        mag = stft_magnitude(wav.to(torch.float64), MEL_WINDOW, MEL_HOP).to(torch.float32)
        basis = torch.from_numpy(MEL_BASIS).to(wav.device)
        return (basis @ mag.pow(2)).T

    @property
    def device(self) -> torch.device:
        return self.linear.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.linear.weight.dtype

    @torch.no_grad()
    def embed_utterance(self, wav: np.ndarray | torch.Tensor, rate: float = RATE,
                        min_coverage: float = MIN_COVERAGE) -> np.ndarray:
        """wav [N] float, 16 kHz (not preprocessed) -> utterance embedding (256,) float32, unit norm.

        The wav is split into partials (:func:`partial_slices`), zero-padded to the end of the
        last partial when that reaches or passes its end, and all partials go through the LSTM
        as one batch; the mean of the partial embeddings is L2-normalised again.
        """
        # a copy for numpy input: from_numpy would share (and warn on) read-only buffers
        x = wav if isinstance(wav, torch.Tensor) else torch.tensor(np.asarray(wav))
        if not x.is_floating_point():
            raise ValueError(f"embed_utterance expects float samples in [-1, 1], got {x.dtype}")
        if x.dim() != 1:
            raise ValueError(f"embed_utterance expects a 1-D wav [N], got shape {tuple(x.shape)}")
        if x.numel() == 0:
            raise ValueError("embed_utterance got an empty wav")
        # resemblyzer feeds float32 wavs to librosa; match that whatever the caller passes
        x = x.to(device=self.device, dtype=torch.float32)
        n = x.numel()
        slices = partial_slices(n, rate, min_coverage)
        padded = slices[-1].stop * MEL_HOP
        if padded >= n:
            x = torch.nn.functional.pad(x, (0, padded - n))
        mel = self.mel_spectrogram(x)
        starts = torch.tensor([s.start for s in slices], device=self.device)
        frames = starts[:, None] + torch.arange(PARTIAL_FRAMES, device=self.device)
        partial = self(mel[frames].to(self.dtype))                   # [P, 256]
        raw = partial.to(torch.float32).mean(dim=0)
        return (raw / torch.linalg.vector_norm(raw)).cpu().numpy()


def packaged_weights_path() -> Path:
    """Path of the ``pretrained.pt`` inside the installed resemblyzer package (not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelLoadError(
            f"the {WHAT}'s default weights come from the `{PACKAGE}` package, which is not "
            f"installed: run `pip install --no-deps {PACKAGE}==0.1.4` (only its {PACKAGED_FILE} "
            "is used), or pass the path of a {'model_state': ...} checkpoint such as FreeVC's "
            "pretrained_bak_5805000.pt")
    for loc in locations:
        candidate = Path(loc) / PACKAGED_FILE
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"the installed `{PACKAGE}` package at {locations[0]} has no {PACKAGED_FILE}: reinstall "
        f"it with `pip install --no-deps --force-reinstall {PACKAGE}==0.1.4`, or pass a "
        "checkpoint path")


def load_speaker_encoder(path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu",
                         dtype: torch.dtype = torch.float32) -> SpeakerEncoder:
    """Build an eval-mode :class:`SpeakerEncoder` from a GE2E checkpoint.

    ``path=None`` uses resemblyzer's packaged ``pretrained.pt``; otherwise a file holding
    ``{"model_state": state_dict, ...}`` (resemblyzer / FreeVC layout ``{'step',
    'model_state', 'optimizer_state'}``; the optimizer state is ignored and stays on the CPU).
    All 16 tensors must be present with the right shapes, or :class:`ModelLoadError` is raised.
    """
    file = packaged_weights_path() if path is None else Path(path)
    ckpt = read_checkpoint(file, WHAT)
    sd = pick_state_dict(ckpt, (STATE_KEY,), file, WHAT)
    del ckpt  # drops the optimizer state before anything reaches the device
    with torch.device("meta"):
        model = SpeakerEncoder()
    check_state_dict(sd, model, file, WHAT)
    model = load_into(model, sd, device, dtype)
    # load_into may swap parameter storages after moving (dtype); re-pack the LSTM weights so
    # cuDNN gets one contiguous buffer instead of compacting them on every call
    model.lstm.flatten_parameters()
    return model
