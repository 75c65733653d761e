"""The lip-sync engine reproduces the official Wav2Lip frames and covers the whole audio."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.wav2lip import load_wav2lip
from service.errors import BadInputError
from service.lipsync.engine import BoxPlan, SyncOptions, composite_frames, sync_lips
from service.lipsync.frames import source_index, stream_output_frames
from service.media import probe, read_audio
from service.types import Audio, FaceBox

from .conftest import DATA, load_case

BOX = (135, 295, 327, 477)
FACE = DATA / "face_dev.mp4"


def fixed_box(face: Path, info: object, n: int, opts: SyncOptions, timer: object) -> BoxPlan:
    return BoxPlan([FaceBox(*opts.box)])  # type: ignore[misc]


@pytest.fixture(scope="module")
def model(weights_dir: Path) -> torch.nn.Module:
    return load_wav2lip(weights_dir / "wav2lip_gan.pth")


@pytest.fixture(scope="module")
def speech() -> Audio:
    return read_audio(DATA / "speech_dev.wav", 16000)


@pytest.mark.parametrize("batch_size", [128, 16])
def test_regions_match_official_inference(model: torch.nn.Module, speech: Audio, batch_size: int) -> None:
    """Lossless regions before encoding: equal to official inference.py up to ±1 level at
    truncation boundaries (at most 0.01 % of values), for every frame the official writes
    except its last-window special case; and the tail frames the official drops exist."""
    ref = load_case("lipsync_regions_slice.npz")
    opts = SyncOptions(box=BOX, batch_size=batch_size)
    frames = list(composite_frames(FACE, speech, model, opts, fixed_box))
    assert len(frames) == 75  # ceil(2.986 s * 25 fps); the official writes 71
    t, b, l, r = BOX
    ours = np.stack([frames[i][t:b, l:r] for i in ref["frame_index"]]).astype(int)
    diff = np.abs(ours - ref["regions"].astype(int))
    compared = ref["frame_index"] < 70
    assert diff[compared].max() <= 1
    assert (diff[compared] > 0).mean() <= 1e-4
    # outside the box the input frame is untouched
    import av
    with av.open(str(FACE)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="bgr24")
    mask = np.ones(first.shape[:2], bool)
    mask[t:b, l:r] = False
    assert np.array_equal(frames[0][mask], first[mask])


def test_sync_writes_mp4_covering_the_audio(model: torch.nn.Module, speech: Audio, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = sync_lips(FACE, speech, out, model, SyncOptions(box=BOX), fixed_box)
    info = probe(out)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.frame_count == 75 and info.fps == 25.0
    assert info.duration_s is not None and info.duration_s >= speech.duration_s
    assert set(result.seconds) >= {"decode", "mel", "infer", "paste", "encode"}
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_short_video_loops_to_cover_long_audio(model: torch.nn.Module, speech: Audio, tmp_path: Path) -> None:
    long_speech = Audio(np.concatenate([speech.samples] * 2), 16000)  # 5.97 s vs a 3 s video
    frames = list(composite_frames(FACE, long_speech, model, SyncOptions(box=BOX), fixed_box))
    assert len(frames) == 150
    t, b, l, r = BOX
    outside = np.ones(frames[0].shape[:2], bool)
    outside[t:b, l:r] = False
    assert np.array_equal(frames[75][outside], frames[0][outside])  # frame 75 shows input frame 0


def test_failure_leaves_no_output(model: torch.nn.Module, speech: Audio, tmp_path: Path) -> None:
    class Boom(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("inference failed")

    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="inference failed"):
        sync_lips(FACE, speech, out, Boom(), SyncOptions(box=BOX), fixed_box)
    assert list(tmp_path.iterdir()) == []


def test_too_large_frames_suggest_resize_factor(model: torch.nn.Module, speech: Audio) -> None:
    with pytest.raises(BadInputError, match="--resize-factor 2"):
        list(composite_frames(FACE, speech, model, SyncOptions(box=BOX, max_pixels=100_000), fixed_box))


def test_resize_factor_downscales_output(model: torch.nn.Module, speech: Audio, tmp_path: Path) -> None:
    result = sync_lips(FACE, speech, tmp_path / "o.mp4", model, SyncOptions(box=(60, 140, 160, 240),
                       resize_factor=2), fixed_box)
    assert (result.width, result.height) == (480, 270)


def test_image_input_uses_fps(model: torch.nn.Module, speech: Audio, tmp_path: Path) -> None:
    import av
    import cv2
    with av.open(str(FACE)) as c:
        cv2.imwrite(str(tmp_path / "face.png"), next(c.decode(video=0)).to_ndarray(format="bgr24"))
    result = sync_lips(tmp_path / "face.png", speech, tmp_path / "o.mp4", model,
                       SyncOptions(box=BOX, image_fps=10), fixed_box)
    assert result.frames == 30 and probe(tmp_path / "o.mp4").frame_count == 30


def test_empty_audio_is_bad_input(model: torch.nn.Module) -> None:
    with pytest.raises(BadInputError, match="empty"):
        list(composite_frames(FACE, Audio(np.zeros(0, np.float32), 16000), model, SyncOptions(box=BOX),
                              fixed_box))


@pytest.mark.parametrize("mode,expected", [("loop", [0, 1, 2, 3, 0, 1, 2, 3, 0]),
                                           ("pingpong", [0, 1, 2, 3, 2, 1, 0, 1, 2])])
def test_frame_order(mode: str, expected: list[int]) -> None:
    assert [source_index(i, 4, mode) for i in range(9)] == expected  # type: ignore[arg-type]
    for short in (False, True):
        got = [(s, int(f[0])) for _, s, f in stream_output_frames(
            lambda: iter([np.full(1, k) for k in range(4)]), 9, mode, short)]  # type: ignore[arg-type]
        assert got == [(k, k) for k in expected]
