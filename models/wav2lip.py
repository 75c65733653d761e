"""Wav2Lip generator (Rudrabha/Wav2Lip ``models/wav2lip.py``) and its checkpoint loader.

Input: a mel window ``[B, 1, 80, 16]`` (0.2 s of audio) and a face stack ``[B, 6, 96, 96]``
(lower half masked BGR crop, then the full reference crop, values in [0, 1]). Output: the
generated face ``[B, 3, 96, 96]`` in (0, 1), BGR.

The layer tree copies the official one exactly so that the released ``wav2lip_gan.pth``
loads strictly. At load, every Conv+BatchNorm pair is folded into a single convolution
(inference-mode BatchNorm is an affine map per channel), which removes half the kernels.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import torch
from torch import nn

from . import _checkpoint as ckpt
from .onednn import PackedConv

MEL_BANDS = 80
MEL_STEP = 16  # mel frames per window: 0.2 s at 80 frames/s
FACE_SIZE = 96


class ConvBlock(nn.Module):
    """Conv2d + BatchNorm + ReLU, optionally residual (the official ``Conv2d`` wrapper)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int],
                 padding: int, residual: bool = False, transposed: bool = False,
                 output_padding: int = 0) -> None:
        super().__init__()
        conv: nn.Module
        if transposed:
            conv = nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding)
        else:
            conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.conv_block = nn.Sequential(conv, nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.conv_block, PackedConv):
            return self.conv_block(x, "relu", add=x if self.residual else None)
        out = self.conv_block(x)
        if torch.is_grad_enabled():  # training: keep the autograd graph intact
            return torch.relu(out + x if self.residual else out)
        # inference: the conv output is a fresh tensor, so the residual add and the ReLU can
        # reuse its memory (two fewer activation-sized allocations per block, ~7 % on CPU)
        if self.residual:
            out.add_(x)
        return out.relu_()

    @torch.no_grad()
    def fold_batchnorm(self) -> None:
        """Replace conv → BN by one conv with scaled weights and shifted bias (eval only)."""
        if isinstance(self.conv_block, PackedConv) or len(self.conv_block) < 2:
            return  # folded already
        conv, bn = self.conv_block[0], self.conv_block[1]
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = conv.weight.double()
        # ConvTranspose2d stores (in, out, kh, kw): the output channel is dim 1
        shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
        conv.weight = nn.Parameter((w * scale.view(shape)).to(conv.weight.dtype), requires_grad=False)
        bias = (conv.bias.double() - bn.running_mean.double()) * scale + bn.bias.double()
        conv.bias = nn.Parameter(bias.to(conv.bias.dtype), requires_grad=False)
        self.conv_block = nn.Sequential(conv)

    def pack(self) -> None:
        """CPU inference: one prepacked oneDNN kernel doing conv, residual add and ReLU
        (:mod:`models.onednn`). Folds BatchNorm first; the block is inference-only after."""
        if isinstance(self.conv_block, PackedConv):
            return
        self.fold_batchnorm()
        self.conv_block = PackedConv(self.conv_block[0])  # type: ignore[assignment]


def _c(cin: int, cout: int, k: int, s: int | tuple[int, int], p: int, residual: bool = False) -> ConvBlock:
    return ConvBlock(cin, cout, k, s, p, residual)


def _up(cin: int, cout: int, k: int, s: int, p: int, op: int = 0) -> ConvBlock:
    return ConvBlock(cin, cout, k, s, p, transposed=True, output_padding=op)


def _res(ch: int, n: int) -> list[ConvBlock]:
    return [_c(ch, ch, 3, 1, 1, residual=True) for _ in range(n)]


class Wav2Lip(nn.Module):
    """The Wav2Lip generator: face U-Net encoder/decoder conditioned on an audio embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(_c(6, 16, 7, 1, 3)),                                  # 96
            nn.Sequential(_c(16, 32, 3, 2, 1), *_res(32, 2)),                   # 48
            nn.Sequential(_c(32, 64, 3, 2, 1), *_res(64, 3)),                   # 24
            nn.Sequential(_c(64, 128, 3, 2, 1), *_res(128, 2)),                 # 12
            nn.Sequential(_c(128, 256, 3, 2, 1), *_res(256, 2)),                # 6
            nn.Sequential(_c(256, 512, 3, 2, 1), *_res(512, 1)),                # 3
            nn.Sequential(_c(512, 512, 3, 1, 0), _c(512, 512, 1, 1, 0)),        # 1
        ])
        self.audio_encoder = nn.Sequential(
            _c(1, 32, 3, 1, 1), *_res(32, 2),
            _c(32, 64, 3, (3, 1), 1), *_res(64, 2),
            _c(64, 128, 3, 3, 1), *_res(128, 2),
            _c(128, 256, 3, (3, 2), 1), *_res(256, 1),
            _c(256, 512, 3, 1, 0),
            _c(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(_c(512, 512, 1, 1, 0)),                               # 1
            nn.Sequential(_up(1024, 512, 3, 1, 0), *_res(512, 1)),              # 3
            nn.Sequential(_up(1024, 512, 3, 2, 1, 1), *_res(512, 2)),           # 6
            nn.Sequential(_up(768, 384, 3, 2, 1, 1), *_res(384, 2)),            # 12
            nn.Sequential(_up(512, 256, 3, 2, 1, 1), *_res(256, 2)),            # 24
            nn.Sequential(_up(320, 128, 3, 2, 1, 1), *_res(128, 2)),            # 48
            nn.Sequential(_up(160, 64, 3, 2, 1, 1), *_res(64, 2)),              # 96
        ])
        self.output_block = nn.Sequential(
            _c(80, 32, 3, 1, 1),
            nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """``mel`` [B,1,80,16], ``faces`` [B,6,96,96] in [0,1] → face [B,3,96,96] in (0,1), BGR."""
        if mel.dim() != 4 or tuple(mel.shape[1:]) != (1, MEL_BANDS, MEL_STEP):
            raise ValueError(f"mel must be [B,1,{MEL_BANDS},{MEL_STEP}], got {tuple(mel.shape)}")
        if faces.dim() != 4 or tuple(faces.shape[1:]) != (6, FACE_SIZE, FACE_SIZE):
            raise ValueError(f"faces must be [B,6,{FACE_SIZE},{FACE_SIZE}], got {tuple(faces.shape)}")
        if mel.shape[0] != faces.shape[0]:
            raise ValueError(f"batch sizes differ: mel {mel.shape[0]}, faces {faces.shape[0]}")
        return self.decode(mel, self.encode_faces(faces))

    def encode_faces(self, faces: torch.Tensor) -> list[torch.Tensor]:
        """The face encoder's seven outputs (the U-Net skips), 96² down to 1², for ``faces``
        [B,6,96,96]. They depend on the face crops only, not on the audio, so a caller may
        keep them for frames it will show again (see ``service.lipsync.face_memo``)."""
        skips = []
        x = faces
        for block in self.face_encoder_blocks:
            x = block(x)
            skips.append(x)
        return skips

    def decode(self, mel: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """The audio encoder and the face decoder: ``mel`` [B,1,80,16] plus the skips of
        :meth:`encode_faces` → face [B,3,96,96]. ``skips`` is consumed."""
        skips = list(skips)
        x = self.audio_encoder(mel)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), skips.pop()), dim=1)
        return self.output_block(x)

    def fold_batchnorm(self) -> Wav2Lip:
        for m in self.modules():
            if isinstance(m, ConvBlock):
                m.fold_batchnorm()
        return self

    def pack(self) -> Wav2Lip:
        """Prepacked oneDNN kernels with fused activations for CPU inference (see
        :mod:`models.onednn`; ~6 % faster in bf16). Inference-only, and the model can no longer
        change device or dtype."""
        for m in self.modules():
            if isinstance(m, ConvBlock):
                m.pack()
        return self


def load_wav2lip(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, fold: bool = True) -> Wav2Lip:
    """Load the released Wav2Lip generator (``wav2lip.pth`` / ``wav2lip_gan.pth``).

    Accepts the release layout ``{"state_dict", "optimizer", "global_step", "global_epoch"}``
    (legacy or zip serialization, keys with or without DataParallel's ``module.``) or a bare
    state_dict. The optimizer state is never moved to ``device``. ``fold`` merges BatchNorm
    into the convolutions (same outputs within ~1e-6, about twice as fast on CPU).
    Raises :class:`models.ModelLoadError` for a missing, corrupt or mismatched file.
    """
    obj = ckpt.read_checkpoint(path, "Wav2Lip")
    if isinstance(obj, dict) and "state_dict" not in obj and obj and \
            all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = OrderedDict(obj)
    else:
        sd = ckpt.pick_state_dict(obj, ("state_dict",), path, "Wav2Lip")
    del obj
    sd = ckpt.strip_prefix(sd, "module.")
    with torch.device("meta"):
        model = Wav2Lip()
    ckpt.check_state_dict(sd, model, path, "Wav2Lip")
    model = ckpt.load_into(model, sd, "cpu", torch.float32)
    del sd  # the model owns the tensors now; folding must free each original as it goes
    if fold:
        model.fold_batchnorm()
    # channels_last: the official input tensor is a channels_last view, and oneDNN's NHWC
    # kernels are the fast ones on CPU (fp32 and bf16); outputs are unchanged
    return ckpt.to_device(model, device, dtype).to(memory_format=torch.channels_last)
