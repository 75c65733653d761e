"""Face detection: the detectors, the official padding/smoothing, and the strategies."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import ModelLoadError
from models.s3fd import S3FD
from service.dev.samples import FACE_SOURCE
from service.errors import BadInputError, MediaError, NoFaceError
from service.face import (
    S3FD_FILE,
    FaceDetection,
    FaceDetector,
    OpenCVCascadeDetector,
    face_boxes,
    fill_nearest,
    interpolate_boxes,
    make_detector,
    pad_box,
    parse_box,
    sample_indices,
    smooth_boxes,
)
from service.face.s3fd import top_candidates
from service.types import FaceBox

DATA = Path(__file__).parent / "data"
REFERENCE_BOX = FaceBox(135, 285, 327, 477)  # face_dev_box.json: x, y, w, h = 327, 135, 150, 150


@pytest.fixture(scope="module")
def frame0() -> np.ndarray:
    """Frame 0 of face_dev.mp4 (960x540, BGR), as PyAV decodes it."""
    img = cv2.imread(str(FACE_SOURCE), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (540, 960, 3)
    return img


@pytest.fixture(scope="module")
def cascade() -> OpenCVCascadeDetector:
    return OpenCVCascadeDetector()


# ---- the official algorithms, written out literally for comparison ----------------------------

def official_smoothing(boxes: np.ndarray, T: int) -> np.ndarray:
    """Wav2Lip inference.py get_smoothened_boxes, verbatim in behaviour."""
    for i in range(len(boxes)):
        if i + T > len(boxes):
            window = boxes[len(boxes) - T:]
        else:
            window = boxes[i: i + T]
        boxes[i] = np.mean(window, axis=0)
    return boxes


def official_pad_and_smooth(rects: Sequence[tuple[int, int, int, int]], shape: tuple[int, int],
                            pads: tuple[int, int, int, int], smooth: bool) -> list[FaceBox]:
    """inference.py face_detect after detection: rect = (x1, y1, x2, y2)."""
    pady1, pady2, padx1, padx2 = pads
    results = []
    for rect in rects:
        y1 = max(0, rect[1] - pady1)
        y2 = min(shape[0], rect[3] + pady2)
        x1 = max(0, rect[0] - padx1)
        x2 = min(shape[1], rect[2] + padx2)
        results.append([x1, y1, x2, y2])
    boxes = np.array(results)
    if smooth:
        boxes = official_smoothing(boxes, T=5)
    return [FaceBox(int(y1), int(y2), int(x1), int(x2)) for x1, y1, x2, y2 in boxes]


def official_s3fd_postprocess(olist: list[torch.Tensor]) -> list[np.ndarray | None]:
    """face_detection sfd batch_detect (after the net) + detect_from_batch, one anchor at a time."""
    BB = olist[0].shape[0]
    olist = list(olist)
    for i in range(len(olist) // 2):
        olist[i * 2] = F.softmax(olist[i * 2], dim=1)
    bboxlist = []
    for i in range(len(olist) // 2):
        ocls, oreg = olist[i * 2], olist[i * 2 + 1]
        stride = 2 ** (i + 2)
        for _, hindex, windex in zip(*np.where(ocls[:, 1, :, :].numpy() > 0.05), strict=True):
            axc, ayc = stride / 2 + windex * stride, stride / 2 + hindex * stride
            score = ocls[:, 1, hindex, windex]
            loc = oreg[:, :, hindex, windex].contiguous().view(BB, 1, 4)
            priors = torch.Tensor([[axc / 1.0, ayc / 1.0, stride * 4 / 1.0, stride * 4 / 1.0]]).view(1, 1, 4)
            box = torch.cat((priors[:, :, :2] + loc[:, :, :2] * 0.1 * priors[:, :, 2:],
                             priors[:, :, 2:] * torch.exp(loc[:, :, 2:] * 0.2)), 2)
            box[:, :, :2] -= box[:, :, 2:] / 2
            box[:, :, 2:] += box[:, :, :2]
            bboxlist.append(torch.cat([box[:, 0] * 1.0, score.unsqueeze(1)], 1).numpy())
    arr = np.array(bboxlist) if bboxlist else np.zeros((1, BB, 5))
    out: list[np.ndarray | None] = []
    for i in range(BB):
        dets = arr[:, i, :]
        kept = [x for x in dets[official_nms(dets, 0.3), :] if x[-1] > 0.5]
        out.append(kept[0] if kept else None)
    return out


def official_nms(dets: np.ndarray, thresh: float) -> list[int]:
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        w, h = np.maximum(0.0, xx2 - xx1 + 1), np.maximum(0.0, yy2 - yy1 + 1)
        ovr = w * h / (areas[i] + areas[order[1:]] - w * h)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


# ---- OpenCV cascade ------------------------------------------------------------------------------

def test_cascade_gives_the_reference_box(frame0: np.ndarray, cascade: OpenCVCascadeDetector) -> None:
    assert cascade.detect([frame0]) == [REFERENCE_BOX]
    assert isinstance(cascade, FaceDetector)


def test_cascade_max_side_stays_close(frame0: np.ndarray) -> None:
    (box,) = OpenCVCascadeDetector(max_side=480).detect([frame0])
    assert box is not None
    for got, ref in zip((box.top, box.bottom, box.left, box.right), (135, 285, 327, 477), strict=True):
        assert abs(got - ref) <= 6


def test_cascade_no_face_is_none(cascade: OpenCVCascadeDetector) -> None:
    assert cascade.detect([np.zeros((240, 320, 3), np.uint8)]) == [None]


# ---- padding and smoothing -----------------------------------------------------------------------

def test_pads_are_applied_and_clipped_as_official() -> None:
    rects = [(2, 5, 90, 95), (40, 40, 60, 60)]  # x1, y1, x2, y2 in a 100x120 (h x w) frame
    pads = (8, 10, 4, 40)
    expected = official_pad_and_smooth(rects, (100, 120), pads, smooth=False)
    got = [pad_box(FaceBox(y1, y2, x1, x2), pads, 100, 120) for x1, y1, x2, y2 in rects]
    assert got == expected == [FaceBox(0, 100, 0, 120), FaceBox(32, 70, 36, 100)]


def test_smoothing_quirks_by_hand() -> None:
    # x1 = 0, 10, ..., 60: windows 0-2 are plain means; from i = 3 the official tail window
    # boxes[2:] already holds smoothed values (in place) and means are truncated (46.8 -> 46)
    boxes = [FaceBox(1 if i == 0 else 2, 100, 10 * i, 200) for i in range(7)]
    got = smooth_boxes(boxes)
    assert [b.left for b in got] == [20, 30, 40, 44, 46, 48, 47]
    assert [b.top for b in got][:2] == [1, 2]  # (1+2+2+2+2)/5 = 1.8 -> 1
    assert all(b.bottom == 100 and b.right == 200 for b in got)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 13])
def test_smoothing_matches_the_official_loop(n: int) -> None:
    rng = np.random.default_rng(n)
    arr = rng.integers(0, 500, size=(n, 4))
    boxes = [FaceBox(int(y1), int(y2), int(x1), int(x2)) for x1, y1, x2, y2 in arr]
    expected = official_smoothing(arr.copy(), T=5)
    assert smooth_boxes(boxes) == [FaceBox(int(y1), int(y2), int(x1), int(x2)) for x1, y1, x2, y2 in expected]
    if n == 4:  # negative slice start: every box becomes the last one
        assert smooth_boxes(boxes) == [boxes[-1]] * 4


def test_fill_nearest_and_interpolate() -> None:
    a, b = FaceBox(10, 20, 30, 40), FaceBox(20, 41, 40, 50)
    assert fill_nearest({1: a, 4: b}, 7) == [a, a, a, b, b, b, b]  # frame 2: a (dist 1), frame 3: b
    assert fill_nearest({2: a, 4: b}, 4) == [a, a, a, a]  # tie at frame 3 -> the earlier one
    got = interpolate_boxes({1: a, 5: b}, 7)
    assert got[0] == got[1] == a and got[5] == got[6] == b
    assert got[3] == FaceBox(15, 31, 35, 45)  # halfway: 30.5 rounds half up to 31
    assert got[2] == FaceBox(13, 25, 33, 43)  # 12.5 -> 13, 25.25 -> 25


# ---- strategies on a synthetic sequence ---------------------------------------------------------

class CountingDetector:
    """Wraps a real detector and records the size of every detect() call."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner, self.name, self.min_frame_side, self.calls = inner, inner.name, inner.min_frame_side, []

    def detect(self, frames: Sequence[np.ndarray]) -> list[FaceBox | None]:
        self.calls.append(len(frames))
        return self.inner.detect(frames)


def make_sequence(frame0: np.ndarray, n: int, blank: set[int]) -> list[np.ndarray]:
    """The reference face at 480x270, moved 2 px right per frame; ``blank`` frames are black."""
    small = cv2.resize(frame0, (480, 270), interpolation=cv2.INTER_AREA)
    return [np.zeros_like(small) if i in blank else np.roll(small, 2 * i, axis=1) for i in range(n)]


class Opener:
    """A streaming frame source: counts how many frames were decoded."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.pulled = frames, 0

    def __call__(self) -> Iterator[np.ndarray]:
        for f in self.frames:
            self.pulled += 1
            yield f


def raw_rects(detector: FaceDetector, frames: list[np.ndarray]) -> list[tuple[int, int, int, int] | None]:
    out = []
    for f in frames:
        (b,) = detector.detect([f])
        out.append(None if b is None else (b.left, b.top, b.right, b.bottom))
    return out


def test_synthetic_sequence_moves(frame0: np.ndarray, cascade: OpenCVCascadeDetector) -> None:
    rects = raw_rects(cascade, make_sequence(frame0, 12, {3, 4}))
    assert rects[3] is None and rects[4] is None
    assert all(r is not None for i, r in enumerate(rects) if i not in (3, 4))
    assert abs((rects[11][0] - rects[0][0]) - 22) <= 4  # it moved ~2 px per frame


@pytest.mark.parametrize("smooth", [True, False])
def test_per_frame_is_official_with_nearest_reuse(frame0: np.ndarray, cascade: OpenCVCascadeDetector,
                                                  smooth: bool) -> None:
    frames = make_sequence(frame0, 12, {3, 4})
    rects = raw_rects(cascade, frames)
    filled = list(rects)
    filled[3], filled[4] = rects[2], rects[5]  # nearest good frame (3 -> 2, 4 -> 5)
    expected = official_pad_and_smooth(filled, (270, 480), (0, 10, 0, 0), smooth)
    det = CountingDetector(cascade)
    opener = Opener(frames)
    assert face_boxes(opener, 12, det, strategy="per-frame", smooth=smooth).boxes == expected
    assert det.calls == [12] and opener.pulled == 12
    assert face_boxes(frames, 12, cascade, strategy="per-frame", smooth=smooth).boxes == expected


def test_per_frame_detects_in_chunks(frame0: np.ndarray) -> None:
    small = cv2.resize(frame0, (160, 90))  # no face at this size: only the chunking matters
    det = CountingDetector(OpenCVCascadeDetector())
    with pytest.raises(NoFaceError):
        face_boxes([small] * 40, 40, det, strategy="per-frame")
    assert det.calls == [16, 16, 8]


def test_static_takes_the_first_agreeing_sample_and_stops_at_a_majority(frame0: np.ndarray,
                                                                        cascade: OpenCVCascadeDetector) -> None:
    frames = make_sequence(frame0, 30, {0, 3})
    assert sample_indices("static", 30) == [0, 7, 14, 22, 29]  # STATIC_SAMPLES spread over the video
    (first_face,) = cascade.detect([frames[7]])
    det, opener = CountingDetector(cascade), Opener(frames)
    found = face_boxes(opener, 30, det, strategy="static", pads=(1, 10, 2, 3))
    box = pad_box(first_face, (1, 10, 2, 3), 270, 480)
    assert found.boxes == [box] * 30
    # frame 0 is blank; 7, 14 and 22 agree: 3 of the 5 samples settle it, frame 29 is never decoded
    assert det.calls == [1, 1, 1, 1] and opener.pulled == 23
    assert found.report == FaceDetection("opencv", 4, 3, box)


def test_static_refuses_a_video_whose_face_is_mostly_missing(frame0: np.ndarray,
                                                             cascade: OpenCVCascadeDetector) -> None:
    frames = make_sequence(frame0, 30, set(range(10, 30)))  # samples 0 and 7 show the face, 14, 22, 29 not
    with pytest.raises(NoFaceError, match=r"no face found in clip\.mp4 \(5 frames checked with the opencv detector, "
                                          r"2 with a detection, 2 showing a face .*face_box .*--box TOP"):
        face_boxes(frames, 30, cascade, strategy="static", source_name="clip.mp4")


def test_one_face_among_many_misses_is_not_a_face(frame0: np.ndarray, cascade: OpenCVCascadeDetector) -> None:
    frames = make_sequence(frame0, 12, set(range(12)) - {5})
    with pytest.raises(NoFaceError, match="12 frames checked .* 1 with a detection, 1 showing a face"):
        face_boxes(frames, 12, cascade, strategy="per-frame")


def test_per_frame_treats_a_disagreeing_box_as_a_miss(frame0: np.ndarray, cascade: OpenCVCascadeDetector) -> None:
    frames = make_sequence(frame0, 12, set())
    frames[6] = np.roll(frames[6], 200, axis=1)  # the face jumps 200 px right for one frame: not the face
    rects = raw_rects(cascade, frames)
    assert rects[6] is not None and rects[6][0] - rects[5][0] > 150
    filled = list(rects)
    filled[6] = rects[5]  # a miss: the nearest agreeing frame's box (5 and 7 tie: the earlier)
    expected = official_pad_and_smooth(filled, (270, 480), (0, 10, 0, 0), smooth=True)
    found = face_boxes(frames, 12, cascade, strategy="per-frame")
    assert found.boxes == expected
    assert (found.report.frames_checked, found.report.frames_with_face) == (12, 11)


def test_keyframe_interpolates_across_a_miss(frame0: np.ndarray, cascade: OpenCVCascadeDetector) -> None:
    frames = make_sequence(frame0, 12, {5})
    assert sample_indices("keyframe", 12, 5) == [0, 5, 10, 11]
    det, opener = CountingDetector(cascade), Opener(frames)
    boxes = face_boxes(opener, 12, det, strategy="keyframe", keyframe_interval=5).boxes
    assert det.calls == [4] and opener.pulled == 12
    k0, k10, k11 = (pad_box(cascade.detect([frames[i]])[0], (0, 10, 0, 0), 270, 480) for i in (0, 10, 11))
    assert boxes[0] == k0 and boxes[10] == k10 and boxes[11] == k11
    for i in range(1, 10):  # frame 5 missed: 0..10 is one straight line
        t = i / 10
        assert boxes[i] == FaceBox(*(int(np.floor(a + t * (b - a) + 0.5)) for a, b in zip(
            (k0.top, k0.bottom, k0.left, k0.right), (k10.top, k10.bottom, k10.left, k10.right), strict=True)))


def test_keyframe_misses_at_the_ends_take_the_nearest(frame0: np.ndarray,
                                                      cascade: OpenCVCascadeDetector) -> None:
    frames = make_sequence(frame0, 17, {0, 15, 16})  # keyframes 0, 5, 10, 15, 16: the face in 2 of 5
    with pytest.raises(NoFaceError, match="5 frames checked"):
        face_boxes(frames, 17, cascade, strategy="keyframe", keyframe_interval=5)
    frames = make_sequence(frame0, 16, {0, 15})  # keyframes 0, 5, 10, 15: the face in half of them
    boxes = face_boxes(frames, 16, cascade, strategy="keyframe", keyframe_interval=5).boxes
    k5, k10 = (pad_box(cascade.detect([frames[i]])[0], (0, 10, 0, 0), 270, 480) for i in (5, 10))
    assert boxes[:6] == [k5] * 6 and boxes[10:] == [k10] * 6


@pytest.mark.parametrize("strategy", ["per-frame", "static", "keyframe"])
def test_no_face_anywhere_names_the_source(strategy: str, cascade: OpenCVCascadeDetector) -> None:
    blank = [np.zeros((120, 160, 3), np.uint8)] * 25
    with pytest.raises(NoFaceError, match=r"no face found in clip\.mp4 \(\d+ frames checked.* 0 with a detection"
                                          r".*face_box .*--box TOP BOTTOM LEFT RIGHT"):
        face_boxes(blank, 25, cascade, strategy=strategy, source_name="clip.mp4")


def test_empty_stream_and_bad_arguments(cascade: OpenCVCascadeDetector) -> None:
    with pytest.raises(MediaError, match="clip.mp4"):
        face_boxes(lambda: iter([]), 5, cascade, source_name="clip.mp4")
    with pytest.raises(ValueError, match="per-frame, static, keyframe"):
        face_boxes([], 1, cascade, strategy="sometimes")
    with pytest.raises(ValueError, match="keyframe_interval"):
        face_boxes([], 1, cascade, strategy="keyframe", keyframe_interval=0)


# ---- --box ---------------------------------------------------------------------------------------

def test_parse_box() -> None:
    assert parse_box([135, 295, 327, 477], 540, 960) == FaceBox(135, 295, 327, 477)
    assert parse_box([0, 540, 0, 960], 540, 960) == FaceBox(0, 540, 0, 960)
    for values, message in [([295, 135, 327, 477], "inverted"), ([135, 295, 477, 477], "inverted"),
                            ([-1, 295, 327, 477], "outside the 960x540 frame"),
                            ([135, 541, 327, 477], "outside"), ([135, 295, 327, 961], "outside"),
                            ([1, 2, 3], "4 numbers"), ([1.5, 20, 3, 40], "whole pixel")]:
        with pytest.raises(BadInputError, match=message) as e:
            parse_box(values, 540, 960)
        assert "\n" not in str(e.value)


# ---- make_detector -------------------------------------------------------------------------------

def test_make_detector_without_s3fd_weights(tmp_path: Path) -> None:
    assert isinstance(make_detector("auto", tmp_path), OpenCVCascadeDetector)
    assert make_detector("opencv", tmp_path, max_side=640).max_side == 640
    with pytest.raises(ValueError, match="auto, opencv, s3fd"):
        make_detector("dlib", tmp_path)
    with pytest.raises(BadInputError, match=f"lipsync weights fetch --only {S3FD_FILE}"):
        make_detector("s3fd", tmp_path)


# ---- S3FD (generated weights: architecture-exact, not trained) ----------------------------------

@pytest.fixture(scope="module")
def s3fd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("s3fd")
    torch.save(S3FD().state_dict(), out / S3FD_FILE)
    return out


def small_frames(frame0: np.ndarray, n: int) -> list[np.ndarray]:
    base = cv2.resize(frame0, (160, 96), interpolation=cv2.INTER_AREA)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def test_s3fd_runs_and_respects_the_batch(s3fd_dir: Path, frame0: np.ndarray) -> None:
    from service.face import S3FDDetector

    det = make_detector("auto", s3fd_dir)
    assert isinstance(det, S3FDDetector) and det.name == "s3fd" and isinstance(det, FaceDetector)
    frames = small_frames(frame0, 3)
    boxes = det.detect(frames)
    assert len(boxes) == 3
    for b in boxes:
        assert b is None or (isinstance(b, FaceBox) and 0 <= b.top < b.bottom <= 96 and 0 <= b.left < b.right <= 160)
    assert S3FDDetector(s3fd_dir / S3FD_FILE, batch_size=3).detect(frames) == boxes
    assert det.min_frame_side == 0  # detects on the resized frame, as official
    try:  # usable by the strategies (generated weights: a face or a refusal)
        assert face_boxes(frames, 3, det, strategy="per-frame").report.detector == "s3fd"
    except NoFaceError:
        pass


@pytest.mark.parametrize("face_logit, found", [(-20.0, False), (20.0, True)])
def test_s3fd_threshold(tmp_path: Path, frame0: np.ndarray, face_logit: float, found: bool) -> None:
    from service.face import S3FDDetector

    torch.manual_seed(1)
    sd = S3FD().state_dict()
    for k in sd:  # classifier heads: zero weights, the bias decides face vs background
        if k.endswith("mbox_conf.weight"):
            sd[k].zero_()
        elif k.endswith("mbox_conf.bias"):
            sd[k].zero_()
            sd[k][-1] = face_logit
    torch.save(sd, tmp_path / S3FD_FILE)
    boxes = S3FDDetector(tmp_path / S3FD_FILE).detect(small_frames(frame0, 2))
    assert [b is not None for b in boxes] == [found, found]


def test_s3fd_rejects_a_wrong_file(tmp_path: Path) -> None:
    from service.face import S3FDDetector

    torch.save({"conv1_1.weight": torch.zeros(1)}, tmp_path / S3FD_FILE)
    with pytest.raises(ModelLoadError, match=f"{S3FD_FILE}.*missing keys"):
        S3FDDetector(tmp_path / S3FD_FILE)


def test_s3fd_postprocessing_matches_the_official_loop() -> None:
    rng = torch.Generator().manual_seed(3)
    sizes = [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2), (1, 1)]  # strides 4 .. 128
    outputs = []
    for h, w in sizes:
        cls = torch.randn(3, 2, h, w, generator=rng) * 3
        cls[2, 1] = -30.0  # image 2: never above 0.05 itself, but gets the batch's candidates
        outputs += [cls, torch.randn(3, 4, h, w, generator=rng)]
    outputs[0][1, 1, 2:5, 3:6] = 40.0  # image 1: nine anchors tied at probability 1.0
    ours, official = top_candidates(outputs), official_s3fd_postprocess(outputs)
    assert ours[2] is None and official[2] is None
    for a, b in zip(ours[:2], official[:2], strict=True):
        assert a is not None and b is not None
        np.testing.assert_array_equal(a, b)
    assert official[1][4] == 1.0
