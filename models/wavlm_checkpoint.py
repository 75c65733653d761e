"""Reading WavLM checkpoints: the unilm file layout and Hugging Face folders (safetensors or
torch ``.bin``, possibly sharded), translated to this project's (unilm) key names.

:func:`models.wavlm.load_wavlm` builds the network from what these return; nothing here knows
the network beyond its config.
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

from ._checkpoint import describe, fold_weight_norm, read_checkpoint
from .errors import ModelLoadError
from .wavlm_config import WavLMConfig

WHAT = "WavLM"


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


HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin",
                    "model.safetensors.index.json", "pytorch_model.bin.index.json")


def read_hf_folder(folder: Path, weights: Path | None = None
                    ) -> tuple[WavLMConfig, OrderedDict[str, torch.Tensor]]:
    """config.json + weights of a Hugging Face WavLM folder -> (config, our state_dict).

    ``weights``: the weight file (or shard index) to use; by default the first of
    :data:`HF_WEIGHT_FILES` present in the folder.
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
    cfg = read_config(lambda: WavLMConfig.from_hf(raw), cfg_file)
    if weights is None:
        weights = next((folder / f for f in HF_WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise ModelLoadError(f"{folder} has config.json but no weights: expected one of "
                             f"{', '.join(HF_WEIGHT_FILES)}")
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


def read_config(make: Callable[[], WavLMConfig], source: Path) -> WavLMConfig:
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
