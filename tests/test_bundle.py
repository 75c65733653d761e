"""The model bundle loads every model once, warms it up and records the cost."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from models import ModelLoadError
from service.bundle import WeightsMissingError, load_bundle, timing_table


def test_loads_and_warms_every_model(weights_dir: Path) -> None:
    b = load_bundle(weights_dir, torch.device("cpu"))
    assert b.loaded == ["wav2lip", "wavlm", "freevc", "speaker"]
    for t in b.timings:
        assert t.parameters > 0 and t.load_s > 0 and t.warmup_s > 0
    assert "resemblyzer" in b.timings[-1].file  # packaged speaker weights by default
    table = timing_table(b)
    assert "wav2lip" in table and "total" in table
    with torch.inference_mode():
        c = b.wavlm.extract(torch.zeros(1, 16000))
        assert c.shape == (1, 1024, 49)


def test_freevc_s_config(weights_dir: Path) -> None:
    b = load_bundle(weights_dir, torch.device("cpu"), freevc_config="freevc-s", only=("freevc",))
    assert b.loaded == ["freevc"] and b.freevc_config == "freevc-s"


def test_missing_files_named_with_the_fix(tmp_path: Path, weights_dir: Path) -> None:
    shutil.copy(weights_dir / "freevc.pth", tmp_path / "freevc.pth")
    with pytest.raises(WeightsMissingError) as e:
        load_bundle(tmp_path, torch.device("cpu"))
    msg = str(e.value)
    assert str(tmp_path / "wav2lip_gan.pth") in msg and str(tmp_path / "WavLM-Large.pt") in msg
    assert str(tmp_path / "freevc.pth") not in msg
    assert "lipsync weights fetch" in msg


def test_speaker_file_in_weights_dir_is_used(tmp_path: Path, weights_dir: Path) -> None:
    from service.weights.formula import write_test_checkpoint

    write_test_checkpoint("speaker", tmp_path / "pretrained_bak_5805000.pt")
    b = load_bundle(tmp_path, torch.device("cpu"), only=("speaker",))
    assert b.timings[0].file.endswith("pretrained_bak_5805000.pt")


def test_wrong_file_is_a_model_load_error(tmp_path: Path, weights_dir: Path) -> None:
    for name in ("freevc.pth", "WavLM-Large.pt"):
        shutil.copy(weights_dir / name, tmp_path / name)
    shutil.copy(weights_dir / "freevc.pth", tmp_path / "wav2lip_gan.pth")
    with pytest.raises(ModelLoadError, match="wav2lip_gan.pth"):
        load_bundle(tmp_path, torch.device("cpu"))


def test_wav2lip_precision_can_differ_from_the_voice_models(weights_dir: Path) -> None:
    b = load_bundle(weights_dir, torch.device("cpu"), only=("wav2lip", "freevc"), wav2lip_dtype=torch.bfloat16)
    assert next(b.wav2lip.parameters()).dtype == torch.bfloat16
    assert next(b.freevc.parameters()).dtype == torch.float32
