"""Pure box arithmetic: official padding and smoothing, gap filling, interpolation, --box."""
from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import BadInputError
from ..types import FaceBox

Pads = tuple[int, int, int, int]  # px added to (top, bottom, left, right)
DEFAULT_PADS: Pads = (0, 10, 0, 0)  # official --pads
SMOOTH_WINDOW = 5  # frames: official get_smoothened_boxes(T=5)


def pad_box(box: FaceBox, pads: Sequence[int], height: int, width: int) -> FaceBox:
    """The official padding of a detector box: grow by ``pads`` (top, bottom, left, right) px,
    then clip to a ``height`` x ``width`` frame (``y1 = max(0, top - pad_top)``, ...)."""
    top, bottom, left, right = pads
    return FaceBox(max(0, box.top - top), min(height, box.bottom + bottom),
                   max(0, box.left - left), min(width, box.right + right))


def smooth_boxes(boxes: Sequence[FaceBox], window: int = SMOOTH_WINDOW) -> list[FaceBox]:
    """Official ``get_smoothened_boxes``, quirks included.

    Box i becomes the mean of boxes i..i+window-1, or of the last ``window`` boxes once
    that runs past the end. As in the official code the boxes live in one integer array
    that is overwritten in place while the loop runs, so each mean is truncated to int when
    stored, and the tail windows average boxes that were already smoothed. With fewer than
    ``window`` boxes the official negative slice start is kept too (e.g. 4 boxes: every
    box becomes the last one).
    """
    arr = np.array([[b.left, b.top, b.right, b.bottom] for b in boxes], dtype=np.int64)  # x1, y1, x2, y2
    n = len(arr)
    for i in range(n):
        win = arr[n - window:] if i + window > n else arr[i:i + window]
        arr[i] = np.mean(win, axis=0)
    return [FaceBox(int(y1), int(y2), int(x1), int(x2)) for x1, y1, x2, y2 in arr]


def fill_nearest(known: Mapping[int, FaceBox], n_frames: int) -> list[FaceBox]:
    """One box per frame: frame i's own box, else the box of the nearest frame that has one
    (the earlier one on a tie). ``known`` must not be empty."""
    if not known:
        raise ValueError("fill_nearest needs at least one box")
    keys = sorted(known)
    out: list[FaceBox] = []
    for i in range(n_frames):
        j = bisect.bisect_left(keys, i)  # keys[j] is the first known frame >= i
        if j == len(keys):
            nearest = keys[-1]
        elif j == 0 or keys[j] == i:
            nearest = keys[j]
        else:
            before, after = keys[j - 1], keys[j]
            nearest = before if i - before <= after - i else after
        out.append(known[nearest])
    return out


def interpolate_boxes(known: Mapping[int, FaceBox], n_frames: int) -> list[FaceBox]:
    """One box per frame, linear between the frames in ``known`` (each side rounded half up
    to a whole pixel); frames before the first or after the last known one take its box.
    ``known`` must not be empty."""
    if not known:
        raise ValueError("interpolate_boxes needs at least one box")
    keys = sorted(known)
    sides = np.array([[known[k].top, known[k].bottom, known[k].left, known[k].right] for k in keys], dtype=np.float64)
    frames = np.arange(n_frames, dtype=np.float64)
    cols = [np.floor(np.interp(frames, keys, sides[:, c]) + 0.5).astype(np.int64) for c in range(4)]
    return [FaceBox(int(t), int(b), int(lf), int(rt)) for t, b, lf, rt in zip(*cols, strict=True)]


def parse_box(values: Sequence[float], frame_h: int, frame_w: int) -> FaceBox:
    """Check a user's ``--box TOP BOTTOM LEFT RIGHT`` (px of the resized frame).

    As in the official code the box is then used as given for every frame: no pads, no
    smoothing. Raises :class:`BadInputError` (one line) unless there are 4 whole numbers
    with ``0 <= TOP < BOTTOM <= frame_h`` and ``0 <= LEFT < RIGHT <= frame_w``.
    """
    if len(values) != 4:
        raise BadInputError(f"--box needs 4 numbers TOP BOTTOM LEFT RIGHT, got {len(values)}")
    if not all(isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and math.isfinite(v)
                                                     and float(v).is_integer()) for v in values):
        raise BadInputError(f"--box needs whole pixel numbers, got {' '.join(str(v) for v in values)}")
    top, bottom, left, right = (int(v) for v in values)
    shown = f"--box {top} {bottom} {left} {right}"
    if top >= bottom or left >= right:
        raise BadInputError(f"{shown} is inverted or empty: need TOP < BOTTOM and LEFT < RIGHT")
    if top < 0 or left < 0 or bottom > frame_h or right > frame_w:
        raise BadInputError(f"{shown} lies outside the {frame_w}x{frame_h} frame (size after --resize-factor): "
                            f"need 0 <= TOP < BOTTOM <= {frame_h} and 0 <= LEFT < RIGHT <= {frame_w}")
    return FaceBox(top, bottom, left, right)
