"""Still images as a face input: decoded exactly like ``cv2.imread`` (the official code's reader)."""
from __future__ import annotations

import cv2
import numpy as np

from service.errors import MediaError

from .containers import PathLike, require_file


def read_image(path: PathLike) -> np.ndarray:
    """BGR uint8 [H, W, 3] of a .jpg/.png/.bmp/.webp file: EXIF orientation applied, alpha dropped,
    16-bit scaled to 8-bit (``cv2.IMREAD_COLOR``)."""
    p = require_file(path)
    image = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(f"{p} is not a video or image (OpenCV cannot decode it); "
                         "give a valid jpg/png image or a video")
    return image
