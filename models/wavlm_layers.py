"""Building blocks of the WavLM network (unilm ``wavlm/WavLM.py`` + ``modules.py`` structure).

Parameter names follow the unilm ``state_dict`` exactly (``feature_extractor.conv_layers.i.0``,
``encoder.pos_conv.0``, ``encoder.layers.i.self_attn.grep_a``, ...), so a ``WavLM-Large.pt``
loads without renaming; the Hugging Face names are translated in :mod:`models.wavlm`.

Layout: activations are batch-first ``[B, T, C]`` in the encoder (unilm uses ``[T, B, C]``;
the arithmetic is the same). Nothing here has buffers: every parameter comes from the file,
and the relative-position buckets are computed per sequence length (see
:func:`relative_position_buckets`), so a model built on the meta device is complete after
``load_state_dict(assign=True)``.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .onednn import PackedLinear
from .wavlm_config import WavLMConfig

CONV_NORM_EPS = 1e-5      # unilm Fp32LayerNorm / Fp32GroupNorm in the conv stack (torch default)
# Largest attention bias block, in elements ([B, heads, query rows, keys]); longer inputs are
# processed in query-row blocks so the bias never needs B*H*T*T floats at once (64 MB fp32).
ATTN_BLOCK_ELEMS = 1 << 24


@lru_cache(maxsize=16)
def _buckets_cached(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    # a numpy array, not a tensor: tensors made under inference_mode cannot be reused freely
    # outside it, and a cached tensor would pin one device
    offset = torch.arange(-(length - 1), length, dtype=torch.long)
    half = num_buckets // 2                     # bidirectional: one half per sign
    bucket = (offset > 0).to(torch.long) * half
    dist = offset.abs()
    max_exact = half // 2                       # distances below this get their own bucket
    # Logarithmic buckets above max_exact, with unilm's float32 op order so the boundaries
    # fall on the same integers. clamp(min=1) only keeps log(0) = -inf out of the long cast;
    # those entries are the exact ones and are not taken from `large`.
    large = max_exact + (torch.log(dist.clamp(min=1).float() / max_exact)
                         / math.log(max_distance / max_exact)
                         * (half - max_exact)).to(torch.long)
    large = torch.minimum(large, torch.full_like(large, half - 1))
    bucket += torch.where(dist < max_exact, dist, large)
    out = bucket.numpy()
    out.setflags(write=False)
    return out


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """Bucket of every key-minus-query offset ``d = -(length-1) .. length-1``: int64 ``[2*length - 1]``.

    unilm's ``_relative_positions_bucket(bidirectional=True)``: positive offsets (key after
    query) use buckets ``num_buckets/2 ..``, the rest ``0 ..``; within a half, distances below
    ``num_buckets/4`` are exact and longer ones are spaced logarithmically up to
    ``max_distance`` frames, beyond which they share the last bucket. Computed on the CPU
    (the GPU's ``log`` may round differently at a boundary) and cached per length.
    """
    return _buckets_cached(int(length), int(num_buckets), int(max_distance))


class ConvBlock(nn.Module):
    """One conv layer of the feature extractor: Conv1d (no padding) -> [norm] -> GELU.

    Children are named like unilm's ``nn.Sequential(conv, Dropout, norm, GELU)``: ``0`` is the
    conv, ``2`` the norm: ``2.1`` a LayerNorm over channels (``layer_norm`` mode, inside a
    ``TransposeLast`` sandwich) or ``2`` a GroupNorm with one group per channel (``default``
    mode, first layer only). Norms run in float32 whatever the model dtype, as unilm's
    ``Fp32LayerNorm`` / ``Fp32GroupNorm`` do.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: str | None) -> None:
        super().__init__()
        self.add_module("0", nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias))
        self.norm_kind = norm
        if norm == "layer":
            self.add_module("2", nn.Sequential(nn.Identity(), nn.LayerNorm(c_out, eps=CONV_NORM_EPS)))
        elif norm == "group":
            self.add_module("2", nn.GroupNorm(c_out, c_out, eps=CONV_NORM_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, L] -> [B, C_out, (L - kernel) // stride + 1]."""
        x = self._modules["0"](x)
        if self.norm_kind == "layer":
            ln = self._modules["2"][1]
            y = F.layer_norm(x.transpose(1, 2).float(), ln.normalized_shape, ln.weight.float(),
                             ln.bias.float(), ln.eps)
            x = y.to(x.dtype).transpose(1, 2)
        elif self.norm_kind == "group":
            gn = self._modules["2"]
            x = F.group_norm(x.float(), gn.num_groups, gn.weight.float(), gn.bias.float(), gn.eps).to(x.dtype)
        return F.gelu(x)


class ConvFeatureExtractor(nn.Module):
    """Raw waveform [B, N] -> conv features [B, C, T] (C = 512, T = cfg.num_frames(N), 20 ms hop)."""

    def __init__(self, cfg: WavLMConfig) -> None:
        super().__init__()
        layers = []
        c_in = 1
        for i, (c_out, k, s) in enumerate(cfg.conv_layers):
            if cfg.extractor_mode == "layer_norm":
                norm = "layer"
            else:
                norm = "group" if i == 0 else None
            layers.append(ConvBlock(c_in, c_out, k, s, cfg.conv_bias, norm))
            c_in = c_out
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav.unsqueeze(1)
        for block in self.conv_layers:
            x = block(x)
        return x


class PositionBias:
    """The relative position bias of one forward pass, shared by every layer.

    Holds the per-offset table (from layer 0's embedding) and one reusable mask buffer: each
    layer writes its gated bias for a block of query rows into the buffer and hands it to
    ``scaled_dot_product_attention``. Reusing the buffer matters on the CPU: a fresh
    64 MB tensor per block and layer is a fresh mmap whose page faults cost more than the
    multiply that fills it.

    Keys are taken last-first (attention does not depend on their order): with the table's
    columns ordered by decreasing offset, the bias of query row i against the reversed keys
    is the contiguous slice ``table[:, i:i + T]``, so no gather or flip of a T x T array is
    needed, only a flip of k and v.
    """

    def __init__(self, table: torch.Tensor, batch: int, length: int) -> None:
        heads = table.shape[0]
        self.length = length
        self.windows = table.unfold(1, length, 1)       # [H, T, T]: [h, i, m] = bias(i, key T-1-m)
        self.rows = max(1, min(length, ATTN_BLOCK_ELEMS // (batch * heads * length)))
        self._buffer = table.new_empty(batch * heads * self.rows * length)
        self._shape = (batch, heads)

    def blocks(self) -> list[tuple[int, int]]:
        """Query-row ranges [i0, i1) processed together."""
        return [(i0, min(self.length, i0 + self.rows)) for i0 in range(0, self.length, self.rows)]

    def mask(self, i0: int, i1: int, gate: torch.Tensor | None) -> torch.Tensor:
        """Bias of query rows i0..i1-1 against the reversed keys, times ``gate`` [B, H, T, 1]
        if given: a view of the shared buffer, [B, H, i1 - i0, T], valid until the next call."""
        b, h = self._shape
        out = self._buffer[: b * h * (i1 - i0) * self.length].view(b, h, i1 - i0, self.length)
        if gate is None:
            out.copy_(self.windows[:, i0:i1])
        else:
            torch.mul(gate[:, :, i0:i1], self.windows[:, i0:i1], out=out)
        return out


class SelfAttention(nn.Module):
    """Multi-head self-attention with WavLM's (gated) relative position bias.

    Logits: ``q k^T / sqrt(head_dim) + bias``. The bias of head h between query frame i and key
    frame j is ``relative_attention_bias[bucket(j - i), h]`` (the table lives in layer 0 only
    and is shared by every layer). With ``gru_rel_pos`` each layer scales it per query row by a
    gate computed from that layer's attention input x (not from q):
    ``g = sigmoid(grep_linear(x_h).view(.., 2, 4).sum(-1))`` -> ``(a, b)``,
    ``gate = a * (b * grep_a[h] - 1) + 2`` (a value in (1, 1 + grep_a)).
    """

    def __init__(self, cfg: WavLMConfig, has_relative_attention_bias: bool) -> None:
        super().__init__()
        dim, heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.num_heads = heads
        self.head_dim = cfg.head_dim
        self.num_buckets = cfg.num_buckets
        self.max_distance = cfg.max_distance
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, heads)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gru_rel_pos = cfg.gru_rel_pos
        if cfg.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def position_bias(self, batch: int, length: int) -> PositionBias:
        """The bias of a [batch, length] forward pass (only the layer with the embedding)."""
        weight = self.relative_attention_bias.weight
        # offsets from largest to smallest: column c holds offset (length - 1) - c
        buckets = relative_position_buckets(length, self.num_buckets, self.max_distance)[::-1]
        idx = torch.tensor(buckets.copy(), device=weight.device)
        return PositionBias(F.embedding(idx, weight).t().contiguous(), batch, length)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Per-row bias scale from the attention input x [B, T, D]: [B, H, T, 1]."""
        b, t, _ = x.shape
        xh = x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        ab = torch.sigmoid(self.grep_linear(xh).view(b, self.num_heads, t, 2, 4).sum(-1))
        gate_a, gate_b = ab.chunk(2, dim=-1)
        return gate_a * (gate_b * self.grep_a - 1.0) + 2.0

    def forward(self, x: torch.Tensor, bias: PositionBias | None) -> torch.Tensor:
        """x [B, T, D], the pass's :class:`PositionBias` (None: no position bias) -> [B, T, D]."""
        b, t, d = x.shape
        h = self.num_heads
        q = self.q_proj(x).view(b, t, h, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, self.head_dim).transpose(1, 2)
        if bias is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            gate = self.gate(x) if self.gru_rel_pos else None
            k, v = k.flip(2), v.flip(2)                      # keys last-first, see PositionBias
            parts = [F.scaled_dot_product_attention(q[:, :, i0:i1], k, v, attn_mask=bias.mask(i0, i1, gate))
                     for i0, i1 in bias.blocks()]
            out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    """Transformer layer; pre-norm (``layer_norm_first``, WavLM-Large) or post-norm (Base)."""

    def __init__(self, cfg: WavLMConfig, has_relative_attention_bias: bool) -> None:
        super().__init__()
        dim, eps = cfg.encoder_embed_dim, cfg.layer_norm_eps
        self.layer_norm_first = cfg.layer_norm_first
        self.activation_fn = cfg.activation_fn
        self.self_attn = SelfAttention(cfg, has_relative_attention_bias)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.fc1, PackedLinear) and self.activation_fn == "gelu":
            # GELU inside the matmul, on its float32 accumulator (unilm: float32 GELU after a
            # rounded matmul output): one pass over the 4096-wide activation fewer
            return self.fc2(self.fc1(x, "gelu"))
        y = self.fc1(x)
        # unilm's gelu runs in float32 and casts back
        y = F.gelu(y.float()).to(y.dtype) if self.activation_fn == "gelu" else F.relu(y)
        return self.fc2(y)

    def forward(self, x: torch.Tensor, bias: PositionBias | None) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D]."""
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x), bias)
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.self_attn(x, bias))
        return self.final_layer_norm(x + self._ffn(x))


class TransformerEncoder(nn.Module):
    """Conv position embedding + transformer layers: [B, T, D] -> [B, T, D].

    ``pos_conv.0`` is unilm's weight-normed grouped Conv1d (kernel ``conv_pos``, padding
    ``conv_pos // 2``); the loader folds its ``weight_g``/``weight_v`` into one weight. An even
    kernel makes one frame too many, and the last one is dropped (unilm ``SamePad``); then GELU,
    added to the input. Pre-norm models end with ``layer_norm``; post-norm ones apply it
    before the first layer instead.
    """

    def __init__(self, cfg: WavLMConfig) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.layer_norm_first = cfg.layer_norm_first
        self.relative_position_embedding = cfg.relative_position_embedding
        self.pos_conv = nn.ModuleList([nn.Conv1d(dim, dim, cfg.conv_pos, padding=cfg.conv_pos // 2,
                                                 groups=cfg.conv_pos_groups)])
        self.pos_trim = 1 if cfg.conv_pos % 2 == 0 else 0
        self.layers = nn.ModuleList([
            EncoderLayer(cfg, has_relative_attention_bias=cfg.relative_position_embedding and i == 0)
            for i in range(cfg.encoder_layers)])
        self.layer_norm = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        pos = self.pos_conv[0](x.transpose(1, 2))
        if self.pos_trim:
            pos = pos[:, :, :-self.pos_trim]
        x = x + F.gelu(pos).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        bias = (self.layers[0].self_attn.position_bias(x.shape[0], t)
                if self.relative_position_embedding else None)
        for layer in self.layers:
            x = layer(x, bias)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x
