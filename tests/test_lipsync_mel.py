"""Wav2Lip mel, mel windows and face crops against the official reference vectors."""
from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

from service.lipsync.faces import crop_faces, model_input, paste_faces
from service.lipsync.mel import mel_windows, output_frame_count, wav2lip_mel, window_starts
from service.types import FaceBox

from .conftest import DATA, load_case

BOX = FaceBox(135, 295, 327, 477)


def _speech() -> np.ndarray:
    with wave.open(str(DATA / "speech_dev.wav")) as w:
        return (np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0).astype(np.float32)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    import av

    with av.open(str(DATA / "face_dev.mp4")) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def test_mel_matches_official_reflect_padded() -> None:
    ref = load_case("wav2lip_mel.npz")
    mel = wav2lip_mel(_speech())
    assert mel.shape == (80, 239)
    assert np.abs(mel - ref["mel"]).max() <= 1e-4


def test_window_starts_match_official_and_cover_whole_audio() -> None:
    ref = load_case("wav2lip_mel.npz")
    n = output_frame_count(int(ref["num_samples"]), float(ref["fps"]))
    assert n == 75  # ceil(2.986 s * 25); the official code writes only 71
    starts = window_starts(n, float(ref["fps"]), 239)
    assert np.array_equal(starts[: int(ref["N"])], ref["window_starts"])
    assert (starts[71:] == 239 - 16).all()  # the dropped tail repeats the last window


def test_output_frame_count_ntsc_rate() -> None:
    assert output_frame_count(16000, 30000 / 1001) == 30
    assert output_frame_count(16001, 25.0) == 26


def test_audio_shorter_than_one_window_is_an_error() -> None:
    with pytest.raises(ValueError, match="audio too short"):
        window_starts(3, 25.0, 10)


def test_case_inputs_reproduced(frames: list[np.ndarray]) -> None:
    case = load_case("wav2lip_case.npz")
    idx = case["frame_index"]
    faces = model_input(crop_faces([frames[i] for i in idx], [BOX] * 4), torch.device("cpu"), torch.float32)
    expected = case["faces_u8"].astype(np.float64) / 255
    assert np.abs(faces.numpy() - expected.astype(np.float32)).max() == 0
    mel = wav2lip_mel(_speech())
    starts = window_starts(75, 25.0, mel.shape[1])
    assert np.abs(mel_windows(mel, starts[idx]) - case["mel"]).max() <= 1e-4


def test_paste_truncates_like_official(frames: list[np.ndarray]) -> None:
    gen = torch.full((1, 3, 96, 96), 0.999)  # 254.745 → 254 truncated, 255 rounded
    trunc = paste_faces([frames[0].copy()], [BOX], gen)[0]
    rounded = paste_faces([frames[0].copy()], [BOX], gen, round_paste=True)[0]
    assert (trunc[135:295, 327:477] == 254).all() and (rounded[135:295, 327:477] == 255).all()
    # nothing outside the box changes
    outside = np.ones(frames[0].shape[:2], bool)
    outside[135:295, 327:477] = False
    assert np.array_equal(trunc[outside], frames[0][outside])


def test_feathered_blend_keeps_box_edges(frames: list[np.ndarray]) -> None:
    gen = torch.zeros((1, 3, 96, 96))
    out = paste_faces([frames[0].copy()], [BOX], gen, blend=0.2)[0]
    assert np.array_equal(out[135, 327:477], frames[0][135, 327:477])  # edge row: original
    assert (out[215, 402] == 0).all()  # centre: generated
