"""Face crops in, generated faces pasted back: the official Wav2Lip data path, vectorised.

Official behaviour reproduced exactly: crop the box, ``cv2.resize`` to 96×96 (bilinear),
zero the lower half (rows 48..95) for the masked copy, stack ``[masked, crop]`` on the
channel axis, divide by 255; paste: output × 255, *truncate* to uint8, resize back to the
box, replace the whole box. Rounding (``round_paste``) and a feathered mouth blend are
options, off by default so the output stays identical to the official one.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from ..types import FaceBox

FACE = 96


def crop_faces(frames: Sequence[np.ndarray], boxes: Sequence[FaceBox]) -> np.ndarray:
    """[B, 96, 96, 3] uint8 BGR crops of each frame's box."""
    out = np.empty((len(frames), FACE, FACE, 3), dtype=np.uint8)
    for k, (frame, b) in enumerate(zip(frames, boxes, strict=True)):
        out[k] = cv2.resize(frame[b.top:b.bottom, b.left:b.right], (FACE, FACE))
    return out


def model_input(crops: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[B, 6, 96, 96] tensor: masked crop then full crop, /255, channels_last like official.

    The official tensor is a transposed (channels_last-strided) view; keeping that memory
    layout makes CPU convolutions pick the same kernels, so truncation boundaries match.
    """
    x = torch.from_numpy(crops).to(device)
    masked = x.clone()
    masked[:, FACE // 2:] = 0
    stacked = torch.cat((masked, x), dim=3).to(torch.float64 if device.type == "cpu" else dtype) / 255.0
    return stacked.to(dtype).permute(0, 3, 1, 2)


def paste_faces(frames: list[np.ndarray], boxes: Sequence[FaceBox], generated: torch.Tensor,
                round_paste: bool = False, blend: float = 0.0) -> list[np.ndarray]:
    """Write each generated face [B,3,96,96] (0..1, BGR) into its frame's box, in place.

    ``blend`` > 0 feathers the edges of the pasted box over that fraction of its size
    (an option; the official paste replaces the box outright).
    """
    pred = generated.float().permute(0, 2, 3, 1).cpu().numpy() * 255.0
    pred = np.rint(pred) if round_paste else pred
    pred_u8 = np.clip(pred, 0, 255).astype(np.uint8) if round_paste else pred.astype(np.uint8)
    for frame, b, face in zip(frames, boxes, pred_u8, strict=True):
        patch = cv2.resize(face, (b.width, b.height))
        if blend > 0:
            alpha = _feather(b.height, b.width, blend)
            region = frame[b.top:b.bottom, b.left:b.right].astype(np.float32)
            patch = (alpha * patch + (1 - alpha) * region + 0.5).astype(np.uint8)
        frame[b.top:b.bottom, b.left:b.right] = patch
    return frames


def _feather(h: int, w: int, share: float) -> np.ndarray:
    ry = np.minimum(np.arange(h), np.arange(h)[::-1]) / max(1.0, share * h)
    rx = np.minimum(np.arange(w), np.arange(w)[::-1]) / max(1.0, share * w)
    return np.clip(np.minimum(ry[:, None], rx[None, :]), 0, 1)[..., None].astype(np.float32)
