"""`lipsync sync` as a user runs it: output, exit codes, one-line errors, nothing left behind."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.commands.cli import main
from service.media import VideoWriter, probe

from .conftest import DATA
from .test_face_placement import write_mostly_background_clip

FACE, SPEECH = DATA / "face_dev.mp4", DATA / "speech_dev.wav"
BOX = ["135", "295", "327", "477"]


def sync(weights_dir: Path, *args: str) -> int:
    return main(["sync", "--wav2lip", str(weights_dir / "wav2lip_gan.pth"), "--device", "cpu",
                 "--no-progress", *args])


def test_box_run_writes_mp4_and_reports_stages(weights_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mp4"
    assert sync(weights_dir, "--face", str(FACE), "--audio", str(SPEECH), "--out", str(out), "--box", *BOX) == 0
    info = probe(out)
    assert info.frame_count == 75 and info.has_audio and info.video_codec == "h264"
    err = capsys.readouterr().err
    for stage in ("decode", "mel", "infer", "paste", "encode", "total"):
        assert stage in err
    assert "face: face box given, no detection: box 135 295 327 477 (top bottom left right)" in err.splitlines()


def test_detector_run_with_keyframes(weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mp4"
    assert sync(weights_dir, "--face", str(FACE), "--audio", str(SPEECH), "--out", str(out),
                "--strategy", "keyframe", "--detector", "opencv", "--resize-factor", "2") == 0
    assert (probe(out).width, probe(out).height) == (480, 270)
    face = [line for line in capsys.readouterr().err.splitlines() if line.startswith("face: ")]
    assert len(face) == 1 and "opencv detector: 9 of 9 checked frames show the face, box " in face[0], face


@pytest.fixture(scope="module")
def blank_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "blank.mp4"
    with VideoWriter(path, 160, 120, 25) as w:
        for _ in range(10):
            w.write(np.full((120, 160, 3), 40, np.uint8))
    return path


@pytest.fixture(scope="module")
def mostly_background(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mostly_background_clip(tmp_path_factory.mktemp("media") / "mostly_rocket.mp4")


@pytest.fixture(scope="module")
def silent_audio_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import wave

    path = tmp_path_factory.mktemp("media") / "empty.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    return path


def _bad_cases(tmp: Path, blank: Path, mostly_background: Path) -> dict[str, tuple[list[str], str]]:
    text = tmp / "notes.mp4"
    text.write_text("not a video")
    return {
        "missing face": (["--face", str(tmp / "nope.mp4"), "--audio", str(SPEECH)], "does not exist"),
        "not a video": (["--face", str(text), "--audio", str(SPEECH)], "not a video or image"),
        "no audio track": (["--face", str(FACE), "--audio", str(FACE)], "no audio track"),
        "box outside": (["--face", str(FACE), "--audio", str(SPEECH), "--box", "0", "600", "0", "100"],
                        "outside"),
        "box inverted": (["--face", str(FACE), "--audio", str(SPEECH), "--box", "295", "135", "327", "477"],
                         "inverted"),
        "no face": (["--face", str(blank), "--audio", str(SPEECH), "--detector", "opencv"], "no face found"),
        # the face in 5 of 25 frames (the rest is the rocket): static sees it in 1 of 5 samples
        "face mostly missing": (["--face", str(mostly_background), "--audio", str(SPEECH), "--detector", "opencv"],
                                "1 showing a face that agrees"),
        "too large": (["--face", str(FACE), "--audio", str(SPEECH), "--box", *BOX, "--max-pixels", "1000"],
                      "--resize-factor 2"),
    }


@pytest.mark.parametrize("case", ["missing face", "not a video", "no audio track", "box outside", "box inverted",
                                  "no face", "face mostly missing", "too large"])
def test_bad_input_exits_2_with_one_line_and_no_output(case: str, weights_dir: Path, tmp_path: Path,
                                                      blank_video: Path, mostly_background: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    args, message = _bad_cases(tmp_path, blank_video, mostly_background)[case]
    out = tmp_path / "out" / "result.mp4"
    out.parent.mkdir()
    assert sync(weights_dir, *args, "--out", str(out)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], err
    assert list(out.parent.iterdir()) == []


def test_empty_audio_exits_2(weights_dir: Path, tmp_path: Path, silent_audio_file: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert sync(weights_dir, "--face", str(FACE), "--audio", str(silent_audio_file), "--out",
                str(tmp_path / "o.mp4"), "--box", *BOX) == 2
    assert "empty" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_unwritable_output_exits_2(weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sync(weights_dir, "--face", str(FACE), "--audio", str(SPEECH), "--out",
                str(tmp_path / "missing-dir" / "o.mp4"), "--box", *BOX) == 2
    assert "not writable" in capsys.readouterr().err


def test_missing_checkpoint_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sync", "--face", str(FACE), "--audio", str(SPEECH), "--out", str(tmp_path / "o.mp4"),
                 "--wav2lip", str(tmp_path / "none.pth"), "--box", *BOX, "--no-progress"])
    assert code == 1 and "not found" in capsys.readouterr().err
