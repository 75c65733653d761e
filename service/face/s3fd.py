"""S3FD, the detector official Wav2Lip runs on every frame, with our copy of its network.

Official Wav2Lip bundles a copy of face-alignment's SFD detector. Per batch of frames it
flips BGR to RGB, subtracts (104, 117, 123) (BGR means applied to RGB channels: a quirk the
weights were used with, kept), runs the net, takes every anchor whose face probability is
above 0.05 in any frame of the batch as a candidate, decodes the boxes in float32, keeps
boxes after NMS 0.3 above 0.5 and returns the first, clipped at 0 and truncated to int.

The first box NMS keeps is always the highest-scoring candidate, so we skip NMS and take
that candidate directly (same candidate order, same ``argsort``, so ties break the same
way), vectorised instead of one Python iteration per anchor. The network is
:class:`models.s3fd.S3FD`, written to face-alignment's parameter names (face-alignment itself
is not a dependency: it pulls scikit-image and numba); the weights file is
``s3fd-619a316812.pth`` (its own name), fetched with
``lipsync weights fetch --only s3fd-619a316812.pth``; nothing is downloaded here.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.s3fd import load_s3fd

from ..types import FaceBox
from .base import box_or_none

S3FD_FILE = "s3fd-619a316812.pth"
INPUT_MEAN = (104.0, 117.0, 123.0)  # subtracted from the R, G, B channels (official quirk)
CANDIDATE_SCORE = 0.05  # face probability for an anchor to become a candidate
FACE_SCORE = 0.5  # probability the top candidate needs to count as a face
VARIANCES = (0.1, 0.2)  # SSD box-regression variances (centre, size)
OFFICIAL_BATCH = 16  # Wav2Lip's --face_det_batch_size
CPU_BATCH = 1  # 1080p activations are ~1 GB per frame; batching buys nothing on a CPU


def s3fd_available() -> bool:
    """Always True: the network is ours (:mod:`models.s3fd`), nothing optional to import.
    Kept for callers written when it came from face-alignment."""
    return True


class S3FDDetector:
    """S3FD face detector (see the module docstring for what is official about it).

    ``batch_size``: frames per forward pass; None picks the official 16 on a GPU and
    ``CPU_BATCH`` on the CPU. Ties between equal top scores can depend on the batch (the
    candidate list is shared by a batch, as in the official code).
    """

    name = "s3fd"
    min_frame_side = 0  # official Wav2Lip runs it on the resized frame: keep that

    def __init__(self, weights_path: str | Path, device: str | torch.device = "cpu",
                 batch_size: int | None = None, dtype: torch.dtype = torch.float32) -> None:
        if str(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.dtype = dtype
        self.net = load_s3fd(weights_path, self.device, dtype)
        if batch_size is None:
            batch_size = OFFICIAL_BATCH if self.device.type == "cuda" else CPU_BATCH
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self._mean = torch.tensor(INPUT_MEAN, device=self.device, dtype=torch.float32).view(1, 3, 1, 1)

    def detect(self, frames: Sequence[np.ndarray]) -> list[FaceBox | None]:
        """One raw box (or None) per BGR uint8 frame ``[H, W, 3]``; frames share one size."""
        out: list[FaceBox | None] = []
        for start in range(0, len(frames), self.batch_size):
            batch = np.stack(frames[start:start + self.batch_size])
            height, width = batch.shape[1:3]
            for top in self._top_candidates(batch):
                if top is None:
                    out.append(None)
                    continue
                x1, y1, x2, y2 = (int(v) for v in np.clip(top[:4], 0, None))  # truncation, as official
                out.append(box_or_none(x1, y1, x2, y2, height, width))
        return out

    def _top_candidates(self, batch: np.ndarray) -> list[np.ndarray | None]:
        x = torch.from_numpy(batch).to(self.device)  # uint8 [B, H, W, 3] BGR
        x = x.flip(-1).permute(0, 3, 1, 2).float() - self._mean  # RGB minus the means, float32
        with torch.inference_mode():
            outputs = self.net(x.to(self.dtype))
        return top_candidates([o.float() for o in outputs])


def top_candidates(outputs: Sequence[torch.Tensor]) -> list[np.ndarray | None]:
    """Per image, the official top box ``[x1, y1, x2, y2, score]`` (float32), or None.

    ``outputs``: the net's ``[cls1, reg1, ..., cls6, reg6]``, class logits ``[B, 2, h, w]``
    and box offsets ``[B, 4, h, w]`` for strides 4, 8, ..., 128 px.
    """
    levels = []
    for level in range(len(outputs) // 2):
        prob = F.softmax(outputs[2 * level], dim=1)[:, 1].cpu()  # [B, h, w] face probability
        reg = outputs[2 * level + 1].cpu()
        # any image's hit makes a candidate for every image, in (image, row, column) order
        _, rows, cols = torch.nonzero(prob > CANDIDATE_SCORE, as_tuple=True)
        stride = 2 ** (level + 2)
        anchor = float(stride * 4)  # px, square
        cx = (stride / 2 + cols * stride).float()
        cy = (stride / 2 + rows * stride).float()
        loc = reg[:, :, rows, cols]  # [B, 4, N]
        # the official float32 decode, operation for operation
        x = cx + loc[:, 0] * VARIANCES[0] * anchor
        y = cy + loc[:, 1] * VARIANCES[0] * anchor
        w = anchor * torch.exp(loc[:, 2] * VARIANCES[1])
        h = anchor * torch.exp(loc[:, 3] * VARIANCES[1])
        x1, y1 = x - w / 2, y - h / 2
        levels.append(torch.stack([x1, y1, w + x1, h + y1, prob[:, rows, cols]], dim=2))  # [B, N, 5]
    candidates = torch.cat(levels, dim=1).numpy()
    result: list[np.ndarray | None] = []
    for image in candidates:
        if len(image) == 0:
            result.append(None)
            continue
        best = image[np.argsort(image[:, 4])[-1]]  # NMS keeps this one first
        result.append(best if best[4] > FACE_SCORE else None)
    return result
