"""WavLM content encoder (microsoft/unilm ``wavlm``; FreeVC's ``utils.get_content``) and its loader.

``load_wavlm(path).extract(wav)`` turns a raw 16 kHz waveform ``[B, N]`` into content features
``[B, 1024, T]`` with ``T = (N - 400) // 320 + 1`` (one frame per 20 ms): the last transformer
layer after the final encoder LayerNorm, i.e. unilm ``extract_features(wav)[0]`` transposed.
The waveform is *not* normalised first, although WavLM-Large's cfg says ``normalize: true``:
FreeVC never normalises, and its models were trained on features made that way.

Weights come from either
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

import json
import mmap
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checkpoint import check_state_dict, describe, fold_weight_norm, load_into, read_checkpoint
from .errors import ModelLoadError
from .wavlm_config import WavLMConfig
from .wavlm_layers import ConvFeatureExtractor, TransformerEncoder

__all__ = ["HF_TO_UNILM", "SAMPLE_RATE", "WavLM", "WavLMConfig", "load_wavlm"]

WHAT = "WavLM"
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
        cfg, sd = _read_hf_folder(p)
    elif p.name in _HF_WEIGHT_FILES or p.suffix == ".safetensors":
        # the weight file of a Hugging Face folder, named directly: its config.json is beside it
        cfg, sd = _read_hf_folder(p.parent, p)
    else:
        obj = read_checkpoint(p, WHAT)
        if not (isinstance(obj, Mapping) and isinstance(obj.get("cfg"), Mapping)
                and isinstance(obj.get("model"), Mapping)):
            raise ModelLoadError(
                f"{p} is not a WavLM checkpoint: expected the unilm layout {{'cfg': dict, "
                f"'model': state_dict}} (as WavLM-Large.pt) or a Hugging Face folder, found "
                f"{describe(obj)}")
        cfg = _config(lambda: WavLMConfig.from_unilm(obj["cfg"]), p)
        sd = unilm_state_dict(obj["model"])
        del obj
    with torch.device("meta"):
        model = WavLM(cfg)
    check_state_dict(sd, model, p, WHAT)
    return load_into(model, sd, device, dtype)


def unilm_state_dict(sd: Mapping[str, Any]) -> OrderedDict[str, torch.Tensor]:
    """A unilm ``model`` state_dict -> this module's: weight norm folded, ``mask_emb`` dropped."""
    out = fold_weight_norm(OrderedDict(sd))
    out.pop("mask_emb", None)
    return out


# Hugging Face transformers WavLMModel key -> unilm key (full match; checked numerically in
# the reference README). ``{conv_norm}`` depends on the extractor: LayerNorm sits at ``2.1``,
# the GroupNorm of the "default" mode at ``2``. The positional conv's weight norm is folded
# before renaming, so only ``weight``/``bias`` remain there.
HF_TO_UNILM: tuple[tuple[str, str], ...] = (
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(\w+)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(\w+)",
     r"feature_extractor.conv_layers.\1.{conv_norm}.\2"),
    (r"feature_projection\.layer_norm\.(\w+)", r"layer_norm.\1"),
    (r"feature_projection\.projection\.(\w+)", r"post_extract_proj.\1"),
    (r"encoder\.pos_conv_embed\.conv\.(\w+)", r"encoder.pos_conv.0.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.([qkv]|out)_proj\.(\w+)", r"encoder.layers.\1.self_attn.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.attention\.rel_attn_embed\.weight",
     r"encoder.layers.\1.self_attn.relative_attention_bias.weight"),
    (r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_const", r"encoder.layers.\1.self_attn.grep_a"),
    (r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_linear\.(\w+)", r"encoder.layers.\1.self_attn.grep_linear.\2"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(\w+)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(\w+)", r"encoder.layers.\1.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(\w+)", r"encoder.layers.\1.fc2.\2"),
)
_HF_DROP = ("masked_spec_embed",)   # training-time mask vector (unilm mask_emb)


def hf_state_dict(sd: Mapping[str, torch.Tensor], cfg: WavLMConfig) -> OrderedDict[str, torch.Tensor]:
    """A Hugging Face WavLM state_dict -> this module's (unilm names, weight norm folded).

    Task-head files (``WavLMForCTC``, ...) prefix the encoder's keys with ``wavlm.``: only those
    are kept. Keys that match no rule pass through unchanged, so the strict key check names them.
    """
    items = OrderedDict(sd)
    if any(k.startswith("wavlm.") for k in items):
        items = OrderedDict((k[len("wavlm."):], v) for k, v in items.items() if k.startswith("wavlm."))
    items = fold_weight_norm(items)   # both parametrizations.weight.original0/1 and weight_g/_v
    conv_norm = "2.1" if cfg.extractor_mode == "layer_norm" else "2"
    rules = [(re.compile(src), dst.replace("{conv_norm}", conv_norm)) for src, dst in HF_TO_UNILM]
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in items.items():
        if key in _HF_DROP:
            continue
        for rx, dst in rules:
            if rx.fullmatch(key):
                key = rx.sub(dst, key)
                break
        out[key] = value
    return out


_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin",
                    "model.safetensors.index.json", "pytorch_model.bin.index.json")


def _read_hf_folder(folder: Path, weights: Path | None = None
                    ) -> tuple[WavLMConfig, OrderedDict[str, torch.Tensor]]:
    """config.json + weights of a Hugging Face WavLM folder -> (config, our state_dict).

    ``weights``: the weight file (or shard index) to use; by default the first of
    :data:`_HF_WEIGHT_FILES` present in the folder.
    """
    cfg_file = folder / "config.json"
    if weights is not None and not weights.is_file():
        raise ModelLoadError(f"{WHAT} checkpoint not found: {weights}")
    if not cfg_file.is_file():
        where = f"{weights} has no config.json beside it" if weights else f"{folder} is a folder without config.json"
        raise ModelLoadError(f"{where}: expected a Hugging Face WavLM folder (microsoft/wavlm-large "
                             "layout: config.json + model.safetensors or pytorch_model.bin) or a "
                             "unilm WavLM-Large.pt file")
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelLoadError(f"{cfg_file} cannot be read as JSON ({type(e).__name__}: {e})") from e
    if isinstance(raw, Mapping) and raw.get("model_type", "wavlm") != "wavlm":
        raise ModelLoadError(f"{cfg_file} describes a {raw.get('model_type')!r} model, not WavLM")
    cfg = _config(lambda: WavLMConfig.from_hf(raw), cfg_file)
    if weights is None:
        weights = next((folder / f for f in _HF_WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise ModelLoadError(f"{folder} has config.json but no weights: expected one of "
                             f"{', '.join(_HF_WEIGHT_FILES)}")
    if weights.name.endswith(".index.json"):
        try:
            shards = sorted(set(json.loads(weights.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelLoadError(f"{weights} is not a valid shard index ({type(e).__name__}: {e})") from e
        if any(not isinstance(f, str) or Path(f).name != f for f in shards):
            raise ModelLoadError(f"{weights} names shard files outside its folder: {shards[:3]}")
        sd: OrderedDict[str, torch.Tensor] = OrderedDict()
        for shard in shards:
            sd.update(_read_weight_file(folder / shard))
    else:
        sd = _read_weight_file(weights)
    return cfg, hf_state_dict(sd, cfg)


def _read_weight_file(path: Path) -> OrderedDict[str, torch.Tensor]:
    """One ``.safetensors`` or torch ``.bin`` file holding a flat state_dict."""
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    obj = read_checkpoint(path, WHAT)
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return OrderedDict(obj)
    raise ModelLoadError(f"{path} is not a Hugging Face weight file: expected a flat state_dict, "
                         f"found {describe(obj)}")


def _config(make: Callable[[], WavLMConfig], source: Path) -> WavLMConfig:
    """Run a config reader; its ValueErrors become ModelLoadErrors naming the file."""
    try:
        return make()
    except (ValueError, TypeError, KeyError, SyntaxError) as e:
        raise ModelLoadError(f"{source}: unsupported WavLM config ({type(e).__name__}: {e})") from e


# ---- safetensors, without the package ------------------------------------------------------

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def read_safetensors(path: str | os.PathLike[str]) -> OrderedDict[str, torch.Tensor]:
    """Read a ``.safetensors`` file (8-byte little-endian header size, JSON header, raw data).

    The data is memory-mapped copy-on-write, so tensors are paged in from the file instead of
    being copied, and writing to them never touches the file. Raises
    :class:`models.ModelLoadError` for a missing, truncated or malformed file.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{WHAT} weights not found: {p}")
    size = p.stat().st_size
    try:
        with open(p, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                raise ValueError(f"header of {header_len:,} bytes does not fit in the file")
            header = json.loads(f.read(header_len))
            if not isinstance(header, dict):
                raise TypeError("header is not a JSON object")
            data_start = 8 + header_len
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size > data_start else None
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = _ST_DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
            numel = int(np.prod(shape)) if shape else 1
            nbytes = numel * torch.empty((), dtype=dtype).element_size()
            if not (0 <= begin <= end <= size - data_start and end - begin == nbytes):
                raise ValueError(f"tensor {name!r} has offsets {begin}..{end} outside the data "
                                 f"or not matching its shape {shape}")
            if numel == 0:
                out[name] = torch.empty(shape, dtype=dtype)
            else:
                out[name] = torch.frombuffer(buf, dtype=dtype, count=numel,
                                             offset=data_start + begin).view(shape)
        return out
    except (OSError, struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ModelLoadError(
            f"{WHAT} weights {p} ({size:,} bytes) cannot be read as a safetensors file: it is "
            f"truncated or corrupt ({type(e).__name__}: {str(e)[:200]})") from e
