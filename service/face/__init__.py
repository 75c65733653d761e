"""Face detection: detectors behind one interface, and the strategies that turn their boxes
into one padded face box per frame (``per-frame`` official, ``static``, ``keyframe``)."""
from .base import FaceDetector
from .boxes import DEFAULT_PADS, SMOOTH_WINDOW, fill_nearest, interpolate_boxes, pad_box, parse_box, smooth_boxes
from .cascade import OpenCVCascadeDetector
from .detectors import DETECTORS, make_detector
from .s3fd import S3FD_FILE, S3FDDetector, load_s3fd, s3fd_available
from .strategies import STRATEGIES, face_boxes, sample_indices

__all__ = [
    "DEFAULT_PADS", "DETECTORS", "S3FD_FILE", "SMOOTH_WINDOW", "STRATEGIES", "FaceDetector",
    "OpenCVCascadeDetector", "S3FDDetector", "face_boxes", "fill_nearest", "interpolate_boxes",
    "load_s3fd", "make_detector", "pad_box", "parse_box", "s3fd_available", "sample_indices", "smooth_boxes",
]
