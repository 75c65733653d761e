"""Prepacked oneDNN kernels for CPU inference: weights reordered once, activations fused.

Eager PyTorch hands oneDNN a plain weight on every call, so each convolution and matmul first
reorders its weight into the blocked layout the kernel wants, then runs bias, activation and
residual add as separate passes over memory. ``torch.compile`` with freezing avoids both by
emitting ``torch.ops.mkldnn._convolution_pointwise`` / ``_linear_pointwise`` calls on weights
reordered at compile time; this module calls the same operators directly, so there is no
compiler, no C++ toolchain at run time and no start-up cost beyond the reorder itself.

Measured on the 2-core EPYC sandbox (bench/RESULTS.md): Wav2Lip's decoder ~6 % faster (bf16),
WavLM's linears 15-19 % (bf16, 50 frames) and ~1.5-2x (fp32); the outputs agree with eager to
float rounding (fused activations are applied before the result is rounded to bf16).

Packing is an inference-only transform: packed modules hold opaque oneDNN tensors, cannot be
moved to another device or dtype, and ignore autograd. It suits layers whose input shape does
not depend on the request's length: a packed *convolution* weight carries the layout oneDNN
chose for one input size, and another size takes a slow path (a FreeVC WN conv at 50 frames:
10.8 ms instead of 0.2 ms), so FreeVC and WavLM's conv stack stay eager. Matmul weights have no
such cliff (swept 1 to 3,000 rows).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch
from torch import nn

__all__ = ["PackedConv", "PackedLinear", "available", "pack_linears"]

_OPS = ("_convolution_pointwise", "_convolution_transpose_pointwise", "_linear_pointwise",
        "_reorder_convolution_weight", "_reorder_convolution_transpose_weight", "_reorder_linear_weight")


@cache
def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch build runs the packed operators on CPU for ``dtype`` (tried once)."""
    if not torch.backends.mkldnn.is_available() or dtype not in (torch.float32, torch.bfloat16):
        return False
    if not all(hasattr(torch.ops.mkldnn, op) for op in _OPS):
        return False
    try:
        with torch.inference_mode():
            conv = PackedConv(nn.Conv2d(2, 2, 3, padding=1).to(dtype))
            x = torch.ones(1, 2, 4, 4, dtype=dtype).contiguous(memory_format=torch.channels_last)
            conv(x, "relu", add=x)
            PackedLinear(nn.Linear(4, 2).to(dtype))(torch.ones(3, 4, dtype=dtype))
    except (RuntimeError, NotImplementedError):  # an op this build lacks for the dtype
        return False
    return True


def _pair(v: int | Sequence[int]) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


class PackedConv(nn.Module):
    """A 2-D convolution or transposed convolution with its weight in oneDNN's layout.

    ``forward(x, act, scalars, add)`` computes ``act(conv(x) + bias + add)``: ``act`` is a oneDNN
    post-op name ("relu", "leaky_relu" with ``scalars=[slope]``, ...) or None, ``add`` an
    optional tensor of the output's shape (not for transposed convolutions). Inputs are NCHW
    tensors, preferably channels_last (the layout the fast kernels use).
    """

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        self.padding = _pair(conv.padding)  # type: ignore[arg-type]
        self.stride, self.dilation = _pair(conv.stride), _pair(conv.dilation)
        self.output_padding = _pair(conv.output_padding) if self.transposed else [0, 0]
        self.groups = conv.groups
        self.out_channels = conv.out_channels
        w = conv.weight.detach()
        mk = torch.ops.mkldnn
        if self.transposed:
            self.weight = mk._reorder_convolution_transpose_weight(
                w, self.padding, self.output_padding, self.stride, self.dilation, self.groups, None)
        else:
            self.weight = mk._reorder_convolution_weight(w, self.padding, self.stride, self.dilation,
                                                         self.groups, None)
        # a Parameter, so `next(model.parameters())` still tells the model's device and dtype
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=w.dtype)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor, act: str | None = None, scalars: Sequence[float] = (),
                add: torch.Tensor | None = None) -> torch.Tensor:
        mk = torch.ops.mkldnn
        unary, args = act or "none", list(scalars)
        if self.transposed:
            y = mk._convolution_transpose_pointwise(x, self.weight, self.bias, self.padding, self.output_padding,
                                                    self.stride, self.dilation, self.groups, unary, args, "")
            if add is not None:
                raise ValueError("a transposed convolution has no fused add")
            return y
        if add is None:
            return mk._convolution_pointwise(x, self.weight, self.bias, self.padding, self.stride,
                                             self.dilation, self.groups, unary, args, "")
        return mk._convolution_pointwise.binary(x, add, self.weight, self.bias, self.padding, self.stride,
                                                self.dilation, self.groups, "add", 1.0, act, args, "")


class PackedLinear(nn.Module):
    """An ``nn.Linear`` with its weight in oneDNN's layout; any number of leading dimensions."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach()
        self.weight = torch.ops.mkldnn._reorder_linear_weight(w, None)
        bias = linear.bias.detach() if linear.bias is not None else torch.zeros(self.out_features, dtype=w.dtype)
        self.bias = nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor, act: str | None = None) -> torch.Tensor:
        """``act``: None, "relu", or "gelu" (the exact, erf form) applied inside the matmul."""
        algorithm = "none" if act == "gelu" else ""  # oneDNN's name for erf GELU (vs "tanh")
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features), self.weight, self.bias,
                                               act or "none", [], algorithm)
        return y.view(*x.shape[:-1], self.out_features)


def pack_linears(model: nn.Module) -> int:
    """Replace every ``nn.Linear`` in ``model`` by a :class:`PackedLinear`; returns how many."""
    swaps = [(parent, name, child) for parent in model.modules()
             for name, child in parent.named_children() if isinstance(child, nn.Linear)]
    for parent, name, child in swaps:
        setattr(parent, name, PackedLinear(child))  # the plain weight is freed with the old module
    return len(swaps)
