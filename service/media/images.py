"""Still images as a face input: decoded exactly like ``cv2.imread`` (the official code's reader)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from service.errors import MediaError

from .containers import FACE_FORMATS, PathLike, face_format


def read_image(path: PathLike) -> np.ndarray:
    """BGR uint8 [H, W, 3] of a jpeg/png/bmp/webp file (by content, whatever its name): EXIF
    orientation applied, alpha dropped, 16-bit scaled to 8-bit (``cv2.IMREAD_COLOR``).

    Other formats OpenCV could decode (tiff, exr, pnm...) are refused with :class:`MediaError`.
    """
    p = Path(path)
    fmt = face_format(p)
    if fmt.kind != "image":
        raise MediaError(f"{p} is not a still image (it is {fmt.name} video); give a jpg/png/bmp/webp image")
    image = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(f"{p} is a damaged {fmt.name} image (OpenCV cannot decode it); give {FACE_FORMATS}")
    return image
