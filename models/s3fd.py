"""S3FD face detector network (face-alignment's ``s3fd``) and its checkpoint loader.

Input: ``[B, 3, H, W]`` float, RGB pixel values minus the per-channel means the weights were
trained with (the caller subtracts them). Output: the list ``[cls1, reg1, ..., cls6, reg6]``,
per detection level (strides 4, 8, 16, 32, 64, 128 px) class logits ``[B, 2, h, w]``
(background, face) and SSD box offsets ``[B, 4, h, w]``; decoding is the caller's job.

A VGG16 trunk (``conv1_1`` ... ``conv5_3``), ``fc6``/``fc7`` as convolutions, two extra
stride-2 stages, L2 normalisation on the three shallow sources, and one ``mbox_conf`` and one
``mbox_loc`` convolution per source. The parameter names and shapes are face-alignment's, so
``s3fd-619a316812.pth`` loads strictly. Two quirks of the original are kept because the
weights depend on them: ``fc6`` pads by 3 (its map is 4 cells wider and taller than the
stride-32 grid), and the first level predicts three background logits and one face logit,
reduced to two by taking the largest background logit ("max-out").

Nothing here imports face-alignment: its package pulls scikit-image and numba (~350 MB).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import _checkpoint as ckpt
from .errors import ModelLoadError

L2NORM_EPS = 1e-10  # added to the channel norm, as the original
MAXOUT_BACKGROUND = 3  # background logits predicted by the first level before the max-out


@dataclass(frozen=True)
class S3FDConfig:
    """Channel widths; the defaults are the released network's."""

    vgg: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)
    """Output channels of VGG blocks 1-5 (2, 2, 3, 3, 3 convolutions)."""
    fc: int = 1024
    """``fc6``/``fc7`` channels."""
    extra: tuple[tuple[int, int], tuple[int, int]] = ((256, 512), (128, 256))
    """(bottleneck, output) channels of the ``conv6_*`` and ``conv7_*`` stages."""
    norm_scales: tuple[float, float, float] = (10.0, 8.0, 5.0)
    """Initial L2Norm scales of conv3_3, conv4_3, conv5_3 (the checkpoint overrides them)."""


VGG_DEPTHS = (2, 2, 3, 3, 3)  # convolutions per VGG block
# detection sources, shallow to deep: their heads are named "<source>_mbox_conf" / "_mbox_loc"
SOURCES = ("conv3_3_norm", "conv4_3_norm", "conv5_3_norm", "fc7", "conv6_2", "conv7_2")


class L2Norm(nn.Module):
    """Scale each position's channel vector to unit L2 norm, then by a learned per-channel
    ``weight`` (initialised to ``scale``). ``[B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + L2NORM_EPS
        return x / norm * self.weight.view(1, -1, 1, 1)


class S3FD(nn.Module):
    """The S3FD network; see the module docstring for inputs and outputs."""

    def __init__(self, config: S3FDConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or S3FDConfig()
        cin = 3
        self._trunk: list[list[str]] = []
        for block, (depth, width) in enumerate(zip(VGG_DEPTHS, cfg.vgg, strict=True), start=1):
            names = []
            for i in range(1, depth + 1):
                name = f"conv{block}_{i}"
                self.add_module(name, nn.Conv2d(cin, width, 3, padding=1))
                names.append(name)
                cin = width
            self._trunk.append(names)
        self.fc6 = nn.Conv2d(cin, cfg.fc, 3, padding=3)
        self.fc7 = nn.Conv2d(cfg.fc, cfg.fc, 1)
        (mid6, out6), (mid7, out7) = cfg.extra
        self.conv6_1 = nn.Conv2d(cfg.fc, mid6, 1)
        self.conv6_2 = nn.Conv2d(mid6, out6, 3, stride=2, padding=1)
        self.conv7_1 = nn.Conv2d(out6, mid7, 1)
        self.conv7_2 = nn.Conv2d(mid7, out7, 3, stride=2, padding=1)
        for name, width, scale in zip(SOURCES[:3], cfg.vgg[2:], cfg.norm_scales, strict=True):
            self.add_module(name, L2Norm(width, scale))
        source_widths = (*cfg.vgg[2:], cfg.fc, out6, out7)
        for level, (name, width) in enumerate(zip(SOURCES, source_widths, strict=True)):
            classes = MAXOUT_BACKGROUND + 1 if level == 0 else 2
            self.add_module(f"{name}_mbox_conf", nn.Conv2d(width, classes, 3, padding=1))
            self.add_module(f"{name}_mbox_loc", nn.Conv2d(width, 4, 3, padding=1))

    def _conv_relu(self, name: str, x: torch.Tensor) -> torch.Tensor:
        # the convolution's output is a fresh tensor: ReLU can reuse its memory
        return F.relu(getattr(self, name)(x), inplace=True)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: ``[B, 3, H, W]`` mean-subtracted RGB. Returns ``[cls1, reg1, ..., cls6, reg6]``:
        logits ``[B, 2, h, w]`` (background, face) and offsets ``[B, 4, h, w]`` per level."""
        sources = []
        h = x
        for block, names in enumerate(self._trunk, start=1):
            for name in names:
                h = self._conv_relu(name, h)
            if block >= 3:  # conv3_3, conv4_3, conv5_3 feed the first three levels
                sources.append(h)
            h = F.max_pool2d(h, 2, 2)
        for name in ("fc6", "fc7"):
            h = self._conv_relu(name, h)
        sources.append(h)
        for stage in ("conv6", "conv7"):
            h = self._conv_relu(f"{stage}_2", self._conv_relu(f"{stage}_1", h))
            sources.append(h)
        outputs = []
        for level, (name, feature) in enumerate(zip(SOURCES, sources, strict=True)):
            if level < 3:
                feature = getattr(self, name)(feature)  # L2Norm
            cls = getattr(self, f"{name}_mbox_conf")(feature)
            if level == 0:  # max-out: the largest of the background logits, then the face logit
                background = cls[:, :MAXOUT_BACKGROUND].amax(dim=1, keepdim=True)
                cls = torch.cat([background, cls[:, MAXOUT_BACKGROUND:]], dim=1)
            outputs += [cls, getattr(self, f"{name}_mbox_loc")(feature)]
        return outputs


def load_s3fd(path: str | os.PathLike[str], device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32) -> S3FD:
    """Load the released S3FD weights (``s3fd-619a316812.pth``: a bare state_dict, as
    face-alignment publishes it; DataParallel's ``module.`` prefix is accepted), strictly,
    into an eval-mode :class:`S3FD` on ``device`` in ``dtype``.

    Raises :class:`models.ModelLoadError` for a missing, corrupt or mismatched file.
    """
    sd = ckpt.read_checkpoint(path, "S3FD")
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelLoadError(f"{path} is not an S3FD checkpoint: expected a bare state_dict, "
                             f"found {ckpt.describe(sd)}")
    sd = ckpt.strip_prefix(sd, "module.")
    with torch.device("meta"):
        model = S3FD()
    ckpt.check_state_dict(sd, model, path, "S3FD")
    ckpt.load_into(model, sd, device, dtype)  # in place: the same module, loaded and in eval mode
    return model
