"""Choosing a face detector by name."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import BadInputError
from .base import FaceDetector
from .cascade import OpenCVCascadeDetector
from .s3fd import S3FD_FILE, S3FDDetector

log = logging.getLogger(__name__)

DETECTORS = ("auto", "opencv", "s3fd")


def make_detector(name: str, weights_dir: str | Path, device: str | torch.device = "cpu", *,
                  max_side: int | None = None) -> FaceDetector:
    """The detector called ``name``, ready to use.

    * ``auto``: S3FD when ``weights_dir/s3fd-619a316812.pth`` exists, else OpenCV's
      cascade (logged, never silent about which one).
    * ``opencv``: OpenCV's bundled Haar cascade; ``max_side`` (px) lets it detect on a
      downscaled copy (see :class:`OpenCVCascadeDetector`).
    * ``s3fd``: S3FD on ``device``; its weights must be in ``weights_dir``.

    Raises ValueError for an unknown name, :class:`BadInputError` when S3FD is asked for
    but its weights file is missing.
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}: choose one of {', '.join(DETECTORS)}")
    weights = Path(weights_dir) / S3FD_FILE
    if name == "auto":
        if weights.is_file():
            log.info("face detector: s3fd (%s)", weights)
            return S3FDDetector(weights, device)
        log.info("face detector: opencv cascade (no %s)", weights)
        return OpenCVCascadeDetector(max_side=max_side)
    if name == "opencv":
        return OpenCVCascadeDetector(max_side=max_side)
    if not weights.is_file():
        raise BadInputError(f"the s3fd face detector needs {weights}: run "
                            f"`lipsync weights fetch --only {S3FD_FILE}`, or use --detector opencv")
    return S3FDDetector(weights, device)
