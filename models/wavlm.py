"""WavLM content encoder (microsoft/unilm ``wavlm``; FreeVC's ``utils.get_content``) and its loader.

``load_wavlm(path).extract(wav)`` turns a raw 16 kHz waveform ``[B, N]`` into content features
``[B, 1024, T]`` with ``T = (N - 400) // 320 + 1`` (one frame per 20 ms): the last transformer
layer after the final encoder LayerNorm, i.e. unilm ``extract_features(wav)[0]`` transposed.
The waveform is *not* normalised first, although WavLM-Large's cfg says ``normalize: true``:
FreeVC never normalises, and its models were trained on features made that way.

Weights come from either (read in :mod:`.wavlm_checkpoint`)
- a unilm checkpoint ``{"cfg": dict, "model": state_dict}`` (``WavLM-Large.pt``), or
- a Hugging Face folder in the ``microsoft/wavlm-large`` layout (``config.json`` +
  ``model.safetensors`` or ``pytorch_model.bin``, possibly sharded, keys possibly prefixed
  ``wavlm.``), whose key names are translated to unilm's (:data:`HF_TO_UNILM`).
Nothing is downloaded. The network's structure follows the stored config (:mod:`.wavlm_config`),
so the 2-layer test checkpoints and the 24-layer Large load through the same path.

Speed: attention uses ``scaled_dot_product_attention`` with the (gated) position bias as its
float mask; long inputs are processed in blocks (conv stack in 10 s chunks, attention in
query-row blocks) so memory grows linearly with the length except for one bounded bias block.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._checkpoint import check_state_dict, describe, load_into, read_checkpoint
from .errors import ModelLoadError
from .onednn import pack_linears
from .wavlm_checkpoint import (
    HF_TO_UNILM,
    HF_WEIGHT_FILES,
    WHAT,
    read_config,
    read_hf_folder,
    read_safetensors,
    unilm_state_dict,
)
from .wavlm_config import WavLMConfig
from .wavlm_layers import ConvFeatureExtractor, TransformerEncoder

__all__ = ["HF_TO_UNILM", "SAMPLE_RATE", "WavLM", "WavLMConfig", "load_wavlm", "read_safetensors"]
SAMPLE_RATE = 16000
# The conv stack runs on at most this many output frames at a time (10 s): its first layer
# alone makes 512 channels at 3.2 kHz, 6.5 MB per second of audio in float32.
CONV_CHUNK_FRAMES = 500


class WavLM(nn.Module):
    """unilm ``WavLM`` for inference: waveform [B, N] (16 kHz, raw) -> features.

    Structure: conv feature extractor (512 ch) -> ``layer_norm`` -> ``post_extract_proj``
    (512 -> D) -> :class:`TransformerEncoder`. ``mask_emb`` (training-time masking) is not
    part of this module; the loader drops it.
    """

    def __init__(self, cfg: WavLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = ConvFeatureExtractor(cfg)
        self.layer_norm = nn.LayerNorm(cfg.conv_dim, eps=cfg.layer_norm_eps)
        self.post_extract_proj = (nn.Linear(cfg.conv_dim, cfg.encoder_embed_dim)
                                  if cfg.conv_dim != cfg.encoder_embed_dim else None)
        self.encoder = TransformerEncoder(cfg)

    @property
    def device(self) -> torch.device:
        return self.layer_norm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.layer_norm.weight.dtype

    @property
    def dim(self) -> int:
        """Feature channels D (1024 for WavLM-Large)."""
        return self.cfg.encoder_embed_dim

    def num_frames(self, n_samples: int) -> int:
        """Output frames for ``n_samples`` input samples: ``(N - 400) // 320 + 1`` for WavLM."""
        return self.cfg.num_frames(n_samples)

    def conv_features(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, N] -> conv features [B, T, 512], in chunks of ``CONV_CHUNK_FRAMES`` frames.

        Exact: frame t depends only on samples ``[hop * t, hop * t + min_samples)`` (no padding
        anywhere in the stack, and the norms act per frame), so each chunk gets the samples
        its frames see and nothing else. The "default" extractor's GroupNorm normalises each
        channel over the whole signal, so that one runs in a single pass on every sample.
        """
        if self.cfg.extractor_mode != "layer_norm":
            return self.feature_extractor(wav).transpose(1, 2)
        total = self.cfg.num_frames(wav.shape[1])
        hop, field = self.cfg.hop, self.cfg.min_samples
        parts = []
        for t0 in range(0, total, CONV_CHUNK_FRAMES):
            t1 = min(total, t0 + CONV_CHUNK_FRAMES)
            chunk = wav[:, t0 * hop:(t1 - 1) * hop + field]
            parts.append(self.feature_extractor(chunk).transpose(1, 2))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def pack(self) -> WavLM:
        """Prepacked oneDNN linears for CPU inference (see :mod:`models.onednn`): 15-19 % faster
        in bf16 at 50 frames, ~1.5-2x in fp32. The convolutions stay eager: their input length
        varies, and a packed conv weight is only fast for the shape it was packed for.
        Inference-only; the model can no longer change device or dtype."""
        pack_linears(self)
        return self

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, N] (model dtype/device) -> last layer [B, T, D]; see :meth:`extract`."""
        n = wav.shape[-1]
        if n < self.cfg.min_samples:
            raise ValueError(f"WavLM needs at least {self.cfg.min_samples} samples "
                             f"({1000 * self.cfg.min_samples / SAMPLE_RATE:g} ms at {SAMPLE_RATE} Hz) "
                             f"to make one frame, got {n}")
        x = self.layer_norm(self.conv_features(wav))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.encoder(x)

    @torch.no_grad()
    def extract(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Content features of raw 16 kHz audio: wav [B, N] float -> [B, D, T] (model dtype, device).

        ``T = (N - 400) // 320 + 1``; N below 400 samples (25 ms) raises ``ValueError``. The
        wav is used as given (no normalisation). Items of a batch are independent (same as
        running them one at a time). Returns a transposed view of ``forward``'s ``[B, T, D]``.
        """
        x = torch.as_tensor(wav)
        if x.dim() != 2:
            raise ValueError(f"WavLM.extract expects a waveform batch [B, N], got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"WavLM.extract expects float samples in [-1, 1], got {x.dtype}")
        x = x.to(device=self.device, dtype=self.dtype)
        return self(x).transpose(1, 2)


# ---- loading ---------------------------------------------------------------------------------

def load_wavlm(path: str | os.PathLike[str], device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> WavLM:
    """Build an eval-mode :class:`WavLM` (no gradients) from a unilm file or a Hugging Face folder.

    ``path``: a unilm checkpoint ``{"cfg": dict, "model": state_dict}`` such as
    ``WavLM-Large.pt``, or a folder with ``config.json`` and ``model.safetensors`` /
    ``pytorch_model.bin`` (``microsoft/wavlm-large`` layout). The structure comes from the
    stored config; every tensor must be present with the right shape.
    Raises :class:`models.ModelLoadError` (naming the file) for a missing, unreadable or
    mismatched checkpoint, or a config this implementation does not build.
    """
    p = Path(path)
    if p.is_dir():
        cfg, sd = read_hf_folder(p)
    elif p.name in HF_WEIGHT_FILES or p.suffix == ".safetensors":
        # the weight file of a Hugging Face folder, named directly: its config.json is beside it
        cfg, sd = read_hf_folder(p.parent, p)
    else:
        obj = read_checkpoint(p, WHAT)
        if not (isinstance(obj, Mapping) and isinstance(obj.get("cfg"), Mapping)
                and isinstance(obj.get("model"), Mapping)):
            raise ModelLoadError(
                f"{p} is not a WavLM checkpoint: expected the unilm layout {{'cfg': dict, "
                f"'model': state_dict}} (as WavLM-Large.pt) or a Hugging Face folder, found "
                f"{describe(obj)}")
        cfg = read_config(lambda: WavLMConfig.from_unilm(obj["cfg"]), p)
        sd = unilm_state_dict(obj["model"])
        del obj
    with torch.device("meta"):
        model = WavLM(cfg)
    check_state_dict(sd, model, p, WHAT)
    return load_into(model, sd, device, dtype)
