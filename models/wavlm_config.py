"""WavLM structure settings, read from a unilm ``cfg`` dict or a Hugging Face ``config.json``.

:class:`WavLMConfig` names what the network looks like; nothing here touches weights. The two
readers start from their library's own defaults and apply the stored values, the way
``WavLMConfig(cfg)`` (unilm, ``__dict__.update``) and ``transformers.WavLMConfig(**json)`` do,
so a file that leaves a field out gets the same value the official code would use. The
defaults differ between the libraries (unilm ``max_distance`` is 1280, Hugging Face's
``max_bucket_distance`` 800; WavLM-Large stores 800 in both), which is why there are two.

Fields that only matter for training (dropouts, masking, ``feature_grad_mult``) are ignored,
and so is ``normalize``: FreeVC feeds the raw waveform, and so does :mod:`models.wavlm`.
Anything that would change the network in a way this implementation does not build raises
``ValueError`` (``TypeError`` for a cfg that is not a dict); the loader turns that into a
:class:`models.ModelLoadError` naming the file.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

ConvSpec = tuple[tuple[int, int, int], ...]  # (channels, kernel, stride) per conv layer

# unilm WavLMConfig.conv_feature_layers default (also the WavLM-Large value)
DEFAULT_CONV_FEATURE_LAYERS = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
EXTRACTOR_MODES = ("default", "layer_norm")   # GroupNorm in conv 0 only / LayerNorm in every conv
ACTIVATIONS = ("gelu", "relu")                # FFN activations this implementation builds
_MAX_CONV_LAYERS = 64                         # guard for the list arithmetic in the cfg string


def parse_conv_layers(spec: Any) -> ConvSpec:
    """unilm ``conv_feature_layers`` -> ((channels, kernel, stride), ...).

    unilm ``eval``s this string; here only list/tuple literals of integers joined by ``+`` and
    ``*`` are accepted, so a checkpoint cannot run code. A list of triples is accepted as is.
    """
    value = _literal(ast.parse(spec, mode="eval").body) if isinstance(spec, str) else spec
    try:
        layers = tuple((int(c), int(k), int(s)) for c, k, s in value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"conv_feature_layers {spec!r} is not a list of (dim, kernel, stride)") from e
    if not layers or any(v <= 0 for layer in layers for v in layer):
        raise ValueError(f"conv_feature_layers {spec!r} must list positive (dim, kernel, stride) triples")
    return layers


def _literal(node: ast.AST) -> Any:
    """Evaluate an AST made of int constants, lists, tuples, ``+`` and ``*`` only."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(node.op, ast.Mult):
            count = left if isinstance(left, int) else right
            if isinstance(count, int) and not 0 <= count <= _MAX_CONV_LAYERS:
                raise ValueError(f"repeat count {count} out of range in conv_feature_layers")
        result = left + right if isinstance(node.op, ast.Add) else left * right
        if isinstance(result, (list, tuple)) and len(result) > _MAX_CONV_LAYERS:
            raise ValueError("conv_feature_layers lists too many layers")
        return result
    raise ValueError(f"unsupported expression in conv_feature_layers: {ast.dump(node)[:80]}")


DEFAULT_CONV_LAYERS: ConvSpec = parse_conv_layers(DEFAULT_CONV_FEATURE_LAYERS)


@dataclass(frozen=True)
class WavLMConfig:
    """The structure of a WavLM network. Defaults are unilm ``WavLMConfig``'s (WavLM-Base-like).

    Frames: the conv stack maps N samples at 16 kHz to ``num_frames(N)`` frames (20 ms hop).
    """

    extractor_mode: str = "default"            # "default" or "layer_norm", see EXTRACTOR_MODES
    conv_layers: ConvSpec = DEFAULT_CONV_LAYERS
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False             # pre-norm layers + a final encoder LayerNorm
    conv_pos: int = 128                        # kernel of the convolutional position embedding
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False  # bucketed attention bias (table in layer 0)
    num_buckets: int = 320
    max_distance: int = 1280                   # frames; unilm default (WavLM-Large stores 800)
    gru_rel_pos: bool = False                  # per-layer query-dependent gate on that bias
    layer_norm_eps: float = 1e-5               # encoder + feature-projection LayerNorms

    def __post_init__(self) -> None:
        if self.extractor_mode not in EXTRACTOR_MODES:
            raise ValueError(f"extractor_mode {self.extractor_mode!r} is not supported "
                             f"(expected one of {', '.join(EXTRACTOR_MODES)})")
        if self.activation_fn not in ACTIVATIONS:
            raise ValueError(f"activation_fn {self.activation_fn!r} is not supported "
                             f"(expected one of {', '.join(ACTIVATIONS)})")
        for name in ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
                     "encoder_attention_heads", "conv_pos", "conv_pos_groups"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
                             f"encoder_attention_heads {self.encoder_attention_heads}")
        if self.encoder_embed_dim % self.conv_pos_groups:
            raise ValueError(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
                             f"conv_pos_groups {self.conv_pos_groups}")
        if self.relative_position_embedding:
            # the bucket formula divides by max_exact = num_buckets // 4 and by
            # log(max_distance / max_exact); outside these ranges it is undefined
            if self.num_buckets < 4:
                raise ValueError(f"num_buckets must be >= 4, got {self.num_buckets}")
            if self.max_distance <= self.num_buckets // 4:
                raise ValueError(f"max_distance {self.max_distance} must exceed num_buckets // 4")
        if not (self.layer_norm_eps > 0 and math.isfinite(self.layer_norm_eps)):
            raise ValueError(f"layer_norm_eps must be a positive number, got {self.layer_norm_eps}")

    @property
    def head_dim(self) -> int:
        return self.encoder_embed_dim // self.encoder_attention_heads

    @property
    def conv_dim(self) -> int:
        """Channels out of the conv feature extractor (512 for WavLM)."""
        return self.conv_layers[-1][0]

    @property
    def hop(self) -> int:
        """Samples between consecutive frames: the product of the conv strides (320)."""
        return math.prod(s for _, _, s in self.conv_layers)

    @property
    def min_samples(self) -> int:
        """Receptive field of one frame in samples (400): the shortest input that gives a frame."""
        need = 1
        for _, k, s in reversed(self.conv_layers):
            need = (need - 1) * s + k
        return need

    def num_frames(self, n_samples: int) -> int:
        """Frames out of the conv stack for ``n_samples`` samples (0 if too short).

        For the WavLM stack this is ``(N - 400) // 320 + 1``: frame t sees samples
        ``[320 t, 320 t + 400)``.
        """
        n = int(n_samples)
        for _, k, s in self.conv_layers:
            if n < k:
                return 0
            n = (n - k) // s + 1
        return n

    # ---- readers ----------------------------------------------------------------------------

    @classmethod
    def from_unilm(cls, cfg: Mapping[str, Any]) -> WavLMConfig:
        """From the ``cfg`` dict of a unilm checkpoint (``WavLM-Large.pt``); unknown keys are ignored."""
        if not isinstance(cfg, Mapping):
            raise TypeError(f"cfg is a {type(cfg).__name__}, not a dict")
        known = {f.name for f in fields(cls)} - {"conv_layers", "layer_norm_eps"}
        values: dict[str, Any] = {}
        for key, raw in cfg.items():
            if key == "conv_feature_layers":
                values["conv_layers"] = parse_conv_layers(raw)
            elif key in known:
                values[key] = _coerce(key, raw, _FIELD_TYPES[key])
        return replace(cls(), **values)

    @classmethod
    def from_hf(cls, cfg: Mapping[str, Any]) -> WavLMConfig:
        """From a Hugging Face ``config.json`` (``transformers.WavLMConfig`` defaults apply).

        Hugging Face WavLM always has the relative position bias and its gate.
        """
        if not isinstance(cfg, Mapping):
            raise TypeError(f"config.json holds a {type(cfg).__name__}, not an object")
        c = dict(_HF_DEFAULTS)
        c.update(cfg)
        norm = c["feat_extract_norm"]
        if norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm {norm!r} is not supported (expected 'group' or 'layer')")
        if c["feat_extract_activation"] != "gelu":
            raise ValueError(f"feat_extract_activation {c['feat_extract_activation']!r} is not supported")
        dims, kernels, strides = (list(c[k]) for k in ("conv_dim", "conv_kernel", "conv_stride"))
        if not len(dims) == len(kernels) == len(strides):
            raise ValueError("conv_dim, conv_kernel and conv_stride have different lengths")
        return cls(
            extractor_mode="layer_norm" if norm == "layer" else "default",
            conv_layers=parse_conv_layers(list(zip(dims, kernels, strides))),
            conv_bias=_coerce("conv_bias", c["conv_bias"], bool),
            encoder_layers=_coerce("num_hidden_layers", c["num_hidden_layers"], int),
            encoder_embed_dim=_coerce("hidden_size", c["hidden_size"], int),
            encoder_ffn_embed_dim=_coerce("intermediate_size", c["intermediate_size"], int),
            encoder_attention_heads=_coerce("num_attention_heads", c["num_attention_heads"], int),
            activation_fn=_coerce("hidden_act", c["hidden_act"], str),
            layer_norm_first=_coerce("do_stable_layer_norm", c["do_stable_layer_norm"], bool),
            conv_pos=_coerce("num_conv_pos_embeddings", c["num_conv_pos_embeddings"], int),
            conv_pos_groups=_coerce("num_conv_pos_embedding_groups", c["num_conv_pos_embedding_groups"], int),
            relative_position_embedding=True,
            num_buckets=_coerce("num_buckets", c["num_buckets"], int),
            max_distance=_coerce("max_bucket_distance", c["max_bucket_distance"], int),
            gru_rel_pos=True,
            layer_norm_eps=_coerce("layer_norm_eps", c["layer_norm_eps"], float),
        )


_FIELD_TYPES: dict[str, type] = {
    "extractor_mode": str, "conv_bias": bool, "encoder_layers": int, "encoder_embed_dim": int,
    "encoder_ffn_embed_dim": int, "encoder_attention_heads": int, "activation_fn": str,
    "layer_norm_first": bool, "conv_pos": int, "conv_pos_groups": int,
    "relative_position_embedding": bool, "num_buckets": int, "max_distance": int,
    "gru_rel_pos": bool,
}

# transformers.WavLMConfig defaults for the fields that shape the network
_HF_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
    "feat_extract_norm": "group", "feat_extract_activation": "gelu",
    "conv_dim": (512,) * 7, "conv_stride": (5, 2, 2, 2, 2, 2, 2), "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_bias": False, "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
    "num_buckets": 320, "max_bucket_distance": 800, "do_stable_layer_norm": False,
}


def _coerce(key: str, value: Any, kind: type) -> Any:
    """Check a stored value's type; ints stand in for bools (0/1) and floats that are whole for ints."""
    if kind is bool:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, kind):
        return value
    raise ValueError(f"{key} = {value!r} is not a {kind.__name__}")
