"""Face detection: detectors behind one interface, the size they detect at, the consensus that
decides which of their boxes are the face, and the strategies that turn those boxes into one
padded face box per frame (``per-frame`` official, ``static``, ``keyframe``)."""
from .base import FaceDetector
from .boxes import DEFAULT_PADS, SMOOTH_WINDOW, fill_nearest, interpolate_boxes, pad_box, parse_box, smooth_boxes
from .cascade import OpenCVCascadeDetector
from .consensus import agreeing_boxes, enough_agree, iou, is_plausible, median_box
from .detectors import DETECTORS, make_detector
from .report import FaceDetection
from .resolution import detection_size, scale_box
from .s3fd import S3FD_FILE, S3FDDetector, load_s3fd, s3fd_available
from .strategies import STATIC_SAMPLES, STRATEGIES, FaceBoxes, face_boxes, sample_indices

__all__ = [
    "DEFAULT_PADS", "DETECTORS", "S3FD_FILE", "SMOOTH_WINDOW", "STATIC_SAMPLES", "STRATEGIES", "FaceBoxes",
    "FaceDetection", "FaceDetector", "OpenCVCascadeDetector", "S3FDDetector", "agreeing_boxes", "detection_size",
    "enough_agree", "face_boxes", "fill_nearest", "interpolate_boxes", "iou", "is_plausible", "load_s3fd",
    "make_detector", "median_box", "pad_box", "parse_box", "s3fd_available", "sample_indices", "scale_box",
    "smooth_boxes",
]
