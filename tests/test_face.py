"""Face detection: the detectors, the official padding/smoothing, and the three strategies."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.errors import BadInputError, NoFaceError
from service.face import (OpenCVCascadeDetector, S3FDDetector, face_boxes, make_detector, pad_box, parse_box,
                          smooth_boxes)
from service.face.detectors import S3FD_FILE, OpenCVCascadeDetector as Cascade, s3fd_available
from service.types import FaceBox

from .conftest import DATA


@pytest.fixture(scope="module")
def frame0() -> np.ndarray:
    import av

    with av.open(str(DATA / "face_dev.mp4")) as c:
        return next(c.decode(video=0)).to_ndarray(format="bgr24")


def test_opencv_cascade_matches_reference_box(frame0: np.ndarray) -> None:
    # shared/reference/media/face_dev_box.json: x,y,w,h = 327,135,150,150 on frame 0
    assert OpenCVCascadeDetector().detect([frame0]) == [FaceBox(135, 285, 327, 477)]
    assert pad_box(FaceBox(135, 285, 327, 477), (0, 10, 0, 0), 540, 960) == FaceBox(135, 295, 327, 477)


def test_cascade_finds_nothing_on_a_blank_frame() -> None:
    assert OpenCVCascadeDetector().detect([np.zeros((240, 320, 3), np.uint8)]) == [None]


def test_downscaled_detection_is_close(frame0: np.ndarray) -> None:
    (b,) = OpenCVCascadeDetector(max_side=480).detect([frame0])
    assert b is not None and abs(b.top - 135) <= 6 and abs(b.left - 327) <= 6


def _official_smoothing(boxes: np.ndarray, T: int = 5) -> np.ndarray:
    """Literal transcription of the official loop, for comparison."""
    for i in range(len(boxes)):
        if i + T > len(boxes):
            window = boxes[len(boxes) - T:]
        else:
            window = boxes[i: i + T]
        boxes[i] = np.mean(window, axis=0)
    return boxes


def test_smoothing_reproduces_official_quirks() -> None:
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 400, size=(23, 4))
    raw[:, 2:] += raw[:, :2] + 50
    boxes = [FaceBox(int(y1), int(y2), int(x1), int(x2)) for x1, y1, x2, y2 in raw]
    expected = _official_smoothing(raw.copy())
    got = smooth_boxes(boxes)
    assert [[b.left, b.top, b.right, b.bottom] for b in got] == expected.tolist()


def test_pads_are_clipped_to_the_frame() -> None:
    assert pad_box(FaceBox(5, 95, 3, 50), (10, 10, 10, 10), 100, 55) == FaceBox(0, 100, 0, 55)


class ScriptedDetector:
    """Finds the face at a per-frame offset; misses the frames listed in ``misses``."""

    name = "scripted"

    def __init__(self, misses: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.misses, self.seen = misses, []

    def detect(self, frames: list[np.ndarray]) -> list[FaceBox | None]:
        out: list[FaceBox | None] = []
        for f in frames:
            i = int(f[0, 0, 0])
            self.seen.append(i)
            out.append(None if i in self.misses else FaceBox(100 + i, 200 + i, 50 + 2 * i, 150 + 2 * i))
        return out


def _frames(n: int):  # noqa: ANN202
    def open_frames():  # noqa: ANN202
        for i in range(n):
            f = np.zeros((400, 500, 3), np.uint8)
            f[0, 0, 0] = i
            yield f
    return open_frames


def test_per_frame_detects_every_frame_and_reuses_nearest_for_misses() -> None:
    det = ScriptedDetector(misses={3, 4})
    boxes = face_boxes(_frames(8), 8, det, "per-frame", pads=(0, 0, 0, 0), smooth=False)
    assert det.seen == list(range(8))
    assert boxes[3] == boxes[2] and boxes[4] == boxes[5]  # nearest good box, earlier one on ties
    assert boxes[7] == FaceBox(107, 207, 64, 164)


def test_static_detects_once() -> None:
    det = ScriptedDetector()
    assert face_boxes(_frames(50), 50, det, "static") == [FaceBox(100, 210, 50, 150)]
    assert det.seen == [0]


def test_static_tries_later_frames_when_the_first_has_no_face() -> None:
    det = ScriptedDetector(misses={0})
    assert face_boxes(_frames(50), 50, det, "static", pads=(0, 0, 0, 0)) == [FaceBox(105, 205, 60, 160)]
    assert det.seen == [0, 5]


def test_keyframe_interpolates_between_keyframes() -> None:
    det = ScriptedDetector()
    boxes = face_boxes(_frames(21), 21, det, "keyframe", pads=(0, 0, 0, 0), keyframe_interval=10)
    assert det.seen == [0, 10, 20]
    assert boxes[5] == FaceBox(105, 205, 60, 160)  # linear between frames 0 and 10
    assert len(boxes) == 21


def test_no_face_anywhere_names_the_source() -> None:
    det = ScriptedDetector(misses=set(range(30)))
    with pytest.raises(NoFaceError, match="no face found in clip.mp4"):
        face_boxes(_frames(30), 30, det, "per-frame", source_name="clip.mp4")


def test_parse_box() -> None:
    assert parse_box([135, 295, 327, 477], 540, 960) == FaceBox(135, 295, 327, 477)
    with pytest.raises(BadInputError, match="inverted"):
        parse_box([295, 135, 327, 477], 540, 960)
    with pytest.raises(BadInputError, match="outside the 960x540 frame"):
        parse_box([135, 600, 327, 477], 540, 960)


def test_make_detector(tmp_path: Path) -> None:
    assert isinstance(make_detector("auto", tmp_path), Cascade)
    assert isinstance(make_detector("opencv", tmp_path), Cascade)
    with pytest.raises(BadInputError, match="unknown detector"):
        make_detector("dlib", tmp_path)
    with pytest.raises(BadInputError, match="lipsync weights fetch --only s3fd-619a316812.pth"):
        make_detector("s3fd", tmp_path)


@pytest.mark.skipif(not s3fd_available(), reason="face-alignment is not installed")
def test_s3fd_runs_with_generated_weights(tmp_path: Path, frame0: np.ndarray) -> None:
    from face_alignment.detection.sfd.net_s3fd import s3fd

    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), tmp_path / S3FD_FILE)
    det = make_detector("auto", tmp_path)
    assert isinstance(det, S3FDDetector)
    small = frame0[::4, ::4].copy()
    out = det.detect([small, small])
    assert len(out) == 2 and all(b is None or isinstance(b, FaceBox) for b in out)
