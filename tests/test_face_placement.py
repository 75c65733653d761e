"""Where the lip-sync lands: detection at a size the detector is reliable at, the consensus of
the sampled frames, and the paste on the astronaut's face (never the background) at the
service's resize 3, for every strategy."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from models.wav2lip import Wav2Lip, load_wav2lip
from service.dev.samples import face_frames, face_image, make_face_video
from service.errors import NoFaceError
from service.face import (
    FaceDetection,
    OpenCVCascadeDetector,
    agreeing_boxes,
    detection_size,
    enough_agree,
    iou,
    is_plausible,
    median_box,
    scale_box,
)
from service.lipsync.boxes import make_box_planner
from service.lipsync.engine import BoxPlan, SyncOptions, composite_frames
from service.media import VideoWriter, iter_frames, probe, read_audio
from service.timing import StageTimer
from service.types import Audio, FaceBox

from .conftest import DATA

FPS = 25
SECONDS = 0.4  # 10 frames: Wav2Lip costs ~8 GFLOP a frame on the CPU
RF = 3  # the service's default resize_factor
PAD_BOTTOM = 10  # official default pads (0, 10, 0, 0), on the resized frame
MARGIN = 2  # px of the resized frame: rounding and the sample's sway between frames


# ---- the consensus, on boxes ---------------------------------------------------------------------

FACE = FaceBox(60, 140, 140, 215)  # a face in a 240 x 426 frame
ROCKET = FaceBox(20, 90, 10, 75)  # a false face on the background


def shifted(box: FaceBox, dx: int) -> FaceBox:
    return FaceBox(box.top, box.bottom, box.left + dx, box.right + dx)


def test_iou_and_plausibility() -> None:
    assert iou(FACE, FACE) == 1.0 and iou(FACE, ROCKET) == 0.0
    assert iou(FaceBox(0, 10, 0, 10), FaceBox(0, 10, 5, 15)) == pytest.approx(50 / 150)
    assert is_plausible(FACE, 240, 426)
    assert not is_plausible(FaceBox(0, 10, 0, 10), 240, 426)  # 10 px: under 5 % of the 240 px side
    assert not is_plausible(FaceBox(0, 100, 0, 30), 240, 426)  # a stripe, not a face


def test_the_longest_chain_is_the_face() -> None:
    found = {0: FACE, 1: ROCKET, 2: shifted(FACE, 4), 3: None, 4: shifted(FACE, 8), 5: ROCKET, 6: shifted(FACE, 12)}
    assert agreeing_boxes(found, 240, 426) == {0: FACE, 2: shifted(FACE, 4), 4: shifted(FACE, 8),
                                               6: shifted(FACE, 12)}
    # one hit among misses is a chain of one: not enough
    lonely = {i: (ROCKET if i == 3 else None) for i in range(6)}
    assert agreeing_boxes(lonely, 240, 426) == {3: ROCKET} and not enough_agree(1, 6)
    # a chain follows a face that moves, as long as neighbouring samples overlap
    moving = {i: shifted(FACE, 20 * i) for i in range(5)}
    assert agreeing_boxes(moving, 240, 426) == moving
    # equally long chains: the earlier one
    assert agreeing_boxes({0: ROCKET, 1: FACE}, 240, 426) == {0: ROCKET}
    assert agreeing_boxes({0: None, 1: FaceBox(0, 5, 0, 5)}, 240, 426) == {}


def test_enough_is_half_and_the_median_is_per_side() -> None:
    assert enough_agree(3, 5) and enough_agree(3, 6) and not enough_agree(2, 5) and not enough_agree(0, 0)
    assert median_box([FACE, shifted(FACE, 4), shifted(FACE, 100)]) == shifted(FACE, 4)
    assert median_box([FaceBox(0, 10, 0, 10), FaceBox(1, 11, 1, 11)]) == FaceBox(1, 11, 1, 11)  # 0.5 rounds up


# ---- the size detection runs at ----------------------------------------------------------------

def test_detection_size() -> None:
    cascade = OpenCVCascadeDetector.min_frame_side
    assert detection_size((720, 1280), (240, 426), cascade) == (360, 640)  # the 720p clip at resize 3
    assert detection_size((1080, 1920), (360, 640), cascade) == (360, 640)  # 1080p at resize 3: its own size
    assert detection_size((720, 1280), (720, 1280), cascade) == (720, 1280)  # resize 1: as official
    assert detection_size((300, 400), (100, 133), cascade) == (300, 400)  # never above the input
    assert detection_size((720, 1280), (240, 426), 0) == (240, 426)  # S3FD: the resized frame, as official


def test_scale_box() -> None:
    assert scale_box(FaceBox(180, 378, 438, 636), (720, 1280), (240, 426)) == FaceBox(60, 126, 146, 212)
    assert scale_box(FACE, (240, 426), (240, 426)) is FACE
    assert scale_box(FaceBox(0, 360, 0, 640), (360, 640), (240, 426)) == FaceBox(0, 240, 0, 426)


def test_face_detection_report() -> None:
    report = FaceDetection("opencv", 5, 4, FaceBox(60, 140, 140, 215))
    assert report.as_dict() == {"detector": "opencv", "frames_checked": 5, "frames_with_face": 4,
                                "box": [60, 140, 140, 215]}
    assert FaceDetection.given(FACE) == FaceDetection("none", 0, 0, FACE)
    assert FaceDetection("opencv", 0, 0, None).as_dict()["box"] is None
    assert "4 of 5" in report.summary() and "60 140 140 215" in report.summary()


# ---- the paste on real clips ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(weights_dir: Path) -> Wav2Lip:
    return load_wav2lip(weights_dir / "wav2lip_gan.pth")


@pytest.fixture(scope="module")
def speech() -> Audio:
    audio = read_audio(DATA / "speech_dev.wav", 16000)
    return Audio(audio.samples[: int(SECONDS * 16000)], 16000)  # one output frame per input frame


@pytest.fixture(scope="module", params=[(1280, 720), (854, 480)], ids=["720p", "480p"])
def clip(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The animated astronaut at 720p (the issue's clip) and 480p (at resize 3 its face is about
    44 px: detected on the 284x160 resized frame, the cascade finds it in none of these frames)."""
    width, height = request.param
    return make_face_video(tmp_path_factory.mktemp("clips") / f"astronaut_{height}p.mp4", SECONDS, width, height,
                           fps=FPS)


@pytest.fixture(scope="module")
def truth(clip: Path) -> FaceBox:
    """Where the face is on the resized frame: the cascade at full resolution (where it finds the
    face in every frame), over all frames, scaled down, with the official pads and a margin."""
    frames = list(iter_frames(clip))
    boxes = OpenCVCascadeDetector().detect(frames)
    assert all(b is not None for b in boxes)
    height, width = frames[0].shape[:2]
    out = (height // RF, width // RF)
    scaled = [scale_box(b, (height, width), out) for b in boxes if b is not None]
    return FaceBox(min(b.top for b in scaled) - MARGIN, max(b.bottom for b in scaled) + PAD_BOTTOM + MARGIN,
                   min(b.left for b in scaled) - MARGIN, max(b.right for b in scaled) + MARGIN)


@pytest.mark.parametrize("strategy", ["static", "keyframe", "per-frame"])
def test_the_paste_lands_on_the_face_at_resize_3(strategy: str, clip: Path, truth: FaceBox, model: Wav2Lip,
                                                 speech: Audio, weights_dir: Path) -> None:
    opts = SyncOptions(strategy=strategy, detector="opencv", resize_factor=RF, keyframe_interval=5)
    info = probe(clip)
    plan = make_box_planner(weights_dir)(clip, info, info.frame_count, opts, StageTimer())
    assert plan.report is not None and plan.report.detector == "opencv"
    assert plan.report.frames_with_face == plan.report.frames_checked  # every sampled frame shows the face
    inputs = list(iter_frames(clip, resize_factor=RF))
    outputs = list(composite_frames(clip, speech, model, opts, lambda *_: plan))
    assert len(outputs) == len(inputs) == info.frame_count
    for i, (before, after) in enumerate(zip(inputs, outputs, strict=True)):
        rows, cols = np.nonzero(np.any(before != after, axis=2))
        assert rows.size, f"frame {i}: nothing was pasted"
        pasted = FaceBox(int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
        assert truth.top <= pasted.top and pasted.bottom <= truth.bottom, f"frame {i}: {pasted} not in {truth}"
        assert truth.left <= pasted.left and pasted.right <= truth.right, f"frame {i}: {pasted} not in {truth}"
        assert iou(pasted, truth) > 0.5, f"frame {i}: {pasted} covers too little of the face {truth}"


# ---- a face missing from most of the video is refused ------------------------------------------

def write_mostly_background_clip(path: Path, width: int = 640, height: int = 360, frames: int = 25,
                                 face_frames_: int = 5) -> Path:
    """The astronaut for the first ``face_frames_`` frames, then the rocket beside her (the
    background the cascade once took for a face) filling the frame."""
    rocket = cv2.resize(face_image()[30:470, 20:220], (width, height), interpolation=cv2.INTER_AREA)
    with VideoWriter(path, width, height, FPS) as w:
        for frame in face_frames(width, height, face_frames_, FPS):
            w.write(frame)
        for _ in range(frames - face_frames_):
            w.write(rocket)
    return path


@pytest.mark.parametrize("strategy", ["static", "keyframe", "per-frame"])
def test_a_face_missing_from_most_frames_is_refused(strategy: str, tmp_path: Path, weights_dir: Path) -> None:
    clip = write_mostly_background_clip(tmp_path / "mostly_rocket.mp4")
    info = probe(clip)
    planner = make_box_planner(weights_dir)
    opts = SyncOptions(strategy=strategy, detector="opencv", keyframe_interval=5)
    with pytest.raises(NoFaceError, match=r"frames checked with the opencv detector.*face_box .*--box") as e:
        planner(clip, info, info.frame_count, opts, StageTimer())
    assert e.value.code == "no_face" and str(clip) in str(e.value)


def test_a_given_box_is_reported_without_detection(clip: Path, weights_dir: Path) -> None:
    info = probe(clip)
    opts = SyncOptions(box=(10, 60, 20, 70), resize_factor=RF)
    plan = make_box_planner(weights_dir)(clip, info, 5, opts, StageTimer())
    assert plan == BoxPlan([FaceBox(10, 60, 20, 70)], FaceDetection("none", 0, 0, FaceBox(10, 60, 20, 70)))
