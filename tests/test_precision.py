"""``auto`` precision: picked per machine, logged, and invisible next to fp32 (issue 16).

The quality gate runs on the reference media (``face_dev.mp4``, ``speech_dev.wav``) with the
reference checkpoints: bf16 — what ``auto`` picks on a CPU with native bf16 — is measured
against fp32 here on every machine (without native bf16 torch emulates it: slower, same numbers).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.quality import alignment_offset, cosine, lipsync_figures, psnr_per_frame, voice_figures
from service import precision
from service.precision import CpuBf16, resolve_precision

from .conftest import DATA

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
BOX = (135, 295, 327, 477)  # ../shared/reference/media/face_dev_box.json
NATIVE = CpuBf16(avx512_bf16=True, amx_bf16=False)
NONE = CpuBf16(avx512_bf16=False, amx_bf16=False)


# ---- the choice --------------------------------------------------------------------------------

@pytest.mark.parametrize(("choice", "device", "cpu", "half", "expected"), [
    ("auto", CUDA, NONE, True, torch.float16),
    ("auto", CUDA, NONE, False, torch.float32),
    ("auto", CPU, NATIVE, True, torch.bfloat16),
    ("auto", CPU, CpuBf16(avx512_bf16=False, amx_bf16=True), True, torch.bfloat16),
    ("auto", CPU, NONE, True, torch.float32),
    ("fp32", CPU, NATIVE, True, torch.float32),   # fp32 stays available everywhere
    ("fp32", CUDA, NONE, True, torch.float32),
    ("bf16", CPU, NONE, True, torch.bfloat16),    # asked for: given, even if emulated
    ("fp16", CUDA, NONE, True, torch.float16),
])
def test_auto_is_fp16_on_cuda_bf16_on_native_cpus_fp32_elsewhere(
        choice: str, device: torch.device, cpu: CpuBf16, half: bool, expected: torch.dtype) -> None:
    assert resolve_precision(choice, device, half, cpu=cpu) == expected


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        resolve_precision("int8", CPU)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert precision._cpuinfo_flags(info) >= {"avx512_bf16", "amx_tile"}
    assert precision._cpuinfo_flags(tmp_path / "missing") == set()
    assert NATIVE.describe() == "CPU has AVX512-BF16"
    assert "no native bf16" in NONE.describe()


def test_the_choice_is_logged_at_start_up(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from service.runtime import ServiceRuntime
    from service.settings import Settings

    monkeypatch.setattr(precision, "cpu_bf16", lambda: NATIVE)
    with caplog.at_level(logging.INFO, logger="service.precision"):
        rt = ServiceRuntime(Settings(device="cpu", work_dir=tmp_path, voice_precision="fp32"), jobs=False)
    assert rt.lipsync_dtype == torch.bfloat16 and rt.dtype == torch.float32
    line = "precision on cpu: Wav2Lip bf16 (auto: CPU has AVX512-BF16); WavLM+FreeVC fp32 (set)"
    assert line in caplog.messages
    monkeypatch.setattr(precision, "cpu_bf16", lambda: NONE)
    assert ServiceRuntime(Settings(device="cpu", work_dir=tmp_path), jobs=False).lipsync_dtype == torch.float32


def test_sync_precision_flag_defaults_to_the_setting(weights_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from service.commands.cli import main

    monkeypatch.setenv("WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setattr(precision, "cpu_bf16", lambda: NATIVE)
    args = ["sync", "--face", str(DATA / "face_dev.mp4"), "--audio", str(DATA / "speech_dev.wav"),
            "--box", *map(str, BOX), "--no-progress", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a.mp4")]) == 0
    assert "precision on cpu: Wav2Lip bf16 (auto: CPU has AVX512-BF16)" in capsys.readouterr().err
    monkeypatch.setenv("LIPSYNC_PRECISION", "fp32")
    assert main([*args, "--out", str(tmp_path / "b.mp4")]) == 0
    assert "precision on cpu: Wav2Lip fp32 (set)" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "c.mp4"), "--precision", "bf16"]) == 0
    assert "precision on cpu: Wav2Lip bf16 (set)" in capsys.readouterr().err


# ---- the quality gate -------------------------------------------------------------------------
# bench/quality.py computes the same figures with the full-size weights for bench/RESULTS.md

@pytest.fixture(scope="module")
def lipsync_gate(weights_dir: Path) -> dict[str, float]:
    return lipsync_figures(weights_dir, ("bf16",))["bf16"]


def test_bf16_frames_are_within_40_db_of_fp32_in_the_mouth_region(lipsync_gate: dict[str, float]) -> None:
    assert lipsync_gate["frames"] == 75
    assert lipsync_gate["mouth_psnr_db_min"] >= 40.0, lipsync_gate


def test_bf16_frames_keep_the_alignment_of_fp32(lipsync_gate: dict[str, float]) -> None:
    # a one-frame shift of the mel windows would still score well on PSNR alone
    assert lipsync_gate["alignment_offset"] == 0 and lipsync_gate["alignment_margin_db"] >= 10.0, lipsync_gate


@pytest.fixture(scope="module")
def voice_gate(weights_dir: Path) -> dict[str, dict[str, float]]:
    return voice_figures(weights_dir, ("bf16",))


def test_bf16_speech_differs_from_fp32_less_than_two_fp32_seeds_do(voice_gate: dict[str, dict[str, float]]) -> None:
    by_precision = voice_gate["bf16"]["relative_deviation"]
    by_seed = voice_gate["fp32 other seed"]["relative_deviation"]
    assert by_precision < by_seed, voice_gate


def test_bf16_speech_keeps_the_speaker(voice_gate: dict[str, dict[str, float]]) -> None:
    assert voice_gate["bf16"]["speaker_cosine"] >= 0.99, voice_gate


def test_gate_measures_fail_on_a_visible_change() -> None:
    # the measures themselves: a one-frame shift and a 4-level error are caught
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    assert alignment_offset(frames, np.roll(frames, 1, axis=0))[0] == -1
    noisy = np.clip(frames.astype(int) + rng.choice([-4, 4], frames.shape), 0, 255).astype(np.uint8)
    assert psnr_per_frame(frames, noisy).max() < 40.0
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 0.0
