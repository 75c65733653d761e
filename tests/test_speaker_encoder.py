"""GE2E speaker encoder (resemblyzer 0.1.4 / FreeVC speaker_encoder): reference vectors, partials, errors.

``data/speaker_case.npz`` holds 3 s of 16 kHz speech (``wav16k``), resemblyzer's embedding of it
with its packaged weights (``emb``) and with generated weights, tag dev-1 (``emb_formula``), and
the ``fingerprint`` of those generated weights.
"""
from __future__ import annotations

import importlib.util
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from models import ModelLoadError
from models.speaker_encoder import (
    MEL_HOP,
    SpeakerEncoder,
    load_speaker_encoder,
    packaged_weights_path,
    partial_slices,
)
from service.weights.formula import fingerprint, write_test_checkpoint

CASE = Path(__file__).parent / "data" / "speaker_case.npz"
LIMIT = 1e-5


@pytest.fixture(scope="module")
def case() -> dict[str, np.ndarray]:
    with np.load(CASE) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def formula_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_checkpoint("speaker", tmp_path_factory.mktemp("speaker") / "speaker.pt")


@pytest.fixture(scope="module")
def formula_encoder(formula_file: Path) -> SpeakerEncoder:
    return load_speaker_encoder(formula_file)


def _packaged_or_skip() -> Path:
    try:
        return packaged_weights_path()
    except ModelLoadError as e:
        pytest.skip(f"resemblyzer's pretrained.pt is not installed "
                    f"(pip install --no-deps resemblyzer==0.1.4): {e}")


def _model_state(path: Path) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict(torch.load(path, map_location="cpu", weights_only=True)["model_state"])


# ---- reference vectors -------------------------------------------------------------------------

# These vectors also pin the reflect-padded mel: resemblyzer's zero-padded mel (modern librosa's
# default) misses `emb` by 7.6e-5, well over LIMIT.
def test_packaged_weights_match_resemblyzer(case):
    _packaged_or_skip()
    emb = load_speaker_encoder(None).embed_utterance(case["wav16k"])
    assert emb.shape == (256,) and emb.dtype == np.float32
    assert np.abs(emb - case["emb"]).max() <= LIMIT


def test_generated_weights_from_file_match_resemblyzer(case, formula_file, formula_encoder):
    # a different fingerprint means the generator changed, not that the encoder is wrong
    assert fingerprint(_model_state(formula_file)) == pytest.approx(float(case["fingerprint"]), rel=1e-9)
    emb = formula_encoder.embed_utterance(case["wav16k"])
    assert np.abs(emb - case["emb_formula"]).max() <= LIMIT


def test_dtype_argument(case, formula_file):
    enc = load_speaker_encoder(formula_file, dtype=torch.float64)
    assert enc.lstm.weight_hh_l0.dtype == torch.float64
    emb = enc.embed_utterance(case["wav16k"])
    assert emb.dtype == np.float32 and np.abs(emb - case["emb_formula"]).max() <= LIMIT


def test_torch_and_float64_inputs_give_the_same_embedding(case, formula_encoder):
    wav = case["wav16k"]
    ref = formula_encoder.embed_utterance(wav)
    assert np.array_equal(formula_encoder.embed_utterance(torch.from_numpy(wav)), ref)
    assert np.array_equal(formula_encoder.embed_utterance(wav.astype(np.float64)), ref)


@pytest.mark.parametrize("n", [48000, 40000, 25600, 3000])
def test_embedding_is_unit_norm_and_non_negative(case, formula_encoder, n):
    emb = formula_encoder.embed_utterance(np.resize(case["wav16k"], n))
    assert emb.shape == (256,) and emb.dtype == np.float32
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-6)
    assert emb.min() >= 0.0


def test_rejects_bad_wavs(formula_encoder):
    with pytest.raises(ValueError, match="1-D"):
        formula_encoder.embed_utterance(np.zeros((2, 16000), np.float32))
    with pytest.raises(ValueError, match="float"):
        formula_encoder.embed_utterance(np.zeros(16000, np.int16))
    with pytest.raises(ValueError, match="empty"):
        formula_encoder.embed_utterance(np.zeros(0, np.float32))


# ---- partial utterances ------------------------------------------------------------------------

def _starts_and_end(n: int) -> tuple[list[int], int]:
    slices = partial_slices(n)
    assert all(s.stop - s.start == 160 for s in slices)
    return [s.start for s in slices], slices[-1].stop * MEL_HOP


def test_partials_3s_keep_the_last_and_pad():
    # 301 frames: starts 0/77/154; the last covers 91 % of its samples, so it stays and the wav
    # is zero-padded to its end
    assert _starts_and_end(48000) == ([0, 77, 154], 50240)


def test_partials_drop_a_short_last_one():
    # the third partial (start 154) would cover only 60 % of its samples: dropped; the kept ones
    # end inside the wav, so nothing is padded
    assert _starts_and_end(40000) == ([0, 77], 37920)


@pytest.mark.parametrize("n", [25600, 25599, 16000, 1000, 1])
def test_partials_short_wav_is_one_padded_partial(n):
    assert _starts_and_end(n) == ([0], 25600)


def test_partials_long_wav():
    starts, end = _starts_and_end(160000)  # 10 s
    assert starts == list(range(0, 848, 77)) and end == 161120


def test_partials_reject_bad_parameters():
    with pytest.raises(ValueError):
        partial_slices(48000, min_coverage=0.0)
    with pytest.raises(ValueError):
        partial_slices(48000, rate=0.5)  # a step longer than a partial would leave gaps


# ---- loading errors ----------------------------------------------------------------------------

def _write(path: Path, model_state, **extra) -> Path:
    torch.save({"step": 0, "model_state": model_state, "optimizer_state": None, **extra}, path)
    return path


def test_optimizer_state_is_ignored(tmp_path, formula_file, case):
    sd = _model_state(formula_file)
    path = tmp_path / "with_opt.pt"
    torch.save({"step": 5, "model_state": sd,
                "optimizer_state": {"state": {0: {"exp_avg": torch.ones(1024, 40)}}, "param_groups": []}},
               path)
    emb = load_speaker_encoder(path).embed_utterance(case["wav16k"])
    assert np.abs(emb - case["emb_formula"]).max() <= LIMIT


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        load_speaker_encoder(path)


def test_truncated_file(tmp_path, formula_file):
    path = tmp_path / "truncated.pt"
    path.write_bytes(formula_file.read_bytes()[:100_000])
    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        load_speaker_encoder(path)


def test_missing_and_unexpected_keys(tmp_path, formula_file):
    sd = _model_state(formula_file)
    del sd["similarity_weight"]  # unused at inference, but a complete file has it
    sd["lstm.weight_ih_l3"] = torch.zeros(1024, 256)
    path = _write(tmp_path / "keys.pt", sd)
    with pytest.raises(ModelLoadError, match=re.escape(str(path))) as e:
        load_speaker_encoder(path)
    assert "similarity_weight" in str(e.value) and "lstm.weight_ih_l3" in str(e.value)


def test_wrong_shapes(tmp_path, formula_file):
    sd = _model_state(formula_file)
    sd["lstm.weight_ih_l0"] = torch.zeros(1024, 80)  # an 80-band mel encoder
    path = _write(tmp_path / "shapes.pt", sd)
    with pytest.raises(ModelLoadError, match=re.escape(str(path))) as e:
        load_speaker_encoder(path)
    assert "lstm.weight_ih_l0" in str(e.value)


def test_freevc_like_file(tmp_path, formula_file):
    path = tmp_path / "G_freevc.pth"
    torch.save({"model": {"enc_p.proj.weight": torch.zeros(2, 2), "dec.conv_pre.weight": torch.zeros(2)},
                "iteration": 0, "optimizer": None, "learning_rate": 2e-4}, path)
    with pytest.raises(ModelLoadError, match=re.escape(str(path))) as e:
        load_speaker_encoder(path)
    assert "model_state" in str(e.value)


def test_packaged_weights_without_resemblyzer(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "resemblyzer" else real(name, *a))
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps resemblyzer==0\.1\.4"):
        load_speaker_encoder(None)
