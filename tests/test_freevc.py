"""FreeVC loads the official checkpoint layout strictly and reproduces the official ``infer``.

The references in tests/data/freevc*_case.npz are outputs of OlaWod/FreeVC on the generated
"dev-1" weights that ``write_test_checkpoint`` writes (see the ``note`` in each file).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from models import ModelLoadError
from models.freevc import CONFIGS, SynthesizerTrn, load_freevc
from models.freevc_mel import mel_spectrogram, num_frames
from service.weights.formula import write_test_checkpoint

from .conftest import load_case

TOL = 1e-4
CASE_FILES = {"freevc": "freevc_case.npz", "freevc-s": "freevc_s_case.npz",
              "freevc-24": "freevc_24_case.npz"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("freevc")
    return {k: write_test_checkpoint(k, out / f"{k}.pth") for k in CONFIGS}


@pytest.fixture(scope="module")
def nets(ckpt: dict[str, Path]) -> dict[str, SynthesizerTrn]:
    return {k: load_freevc(p, config=k) for k, p in ckpt.items()}


@pytest.fixture(scope="module")
def raw_sd(ckpt: dict[str, Path]) -> OrderedDict[str, torch.Tensor]:
    """The freevc file's state_dict, for writing altered copies."""
    return torch.load(ckpt["freevc"], map_location="cpu", mmap=True)["model"]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _maxdiff(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.numpy().astype(np.float64) - b).max())


# ---- reproduces the official outputs ---------------------------------------------------------

@pytest.mark.parametrize("config", ["freevc", "freevc-24"])
def test_external_speaker_configs_match_reference(nets: dict, config: str) -> None:
    case = load_case(CASE_FILES[config])
    out = nets[config].infer(_t(case["c"]), g=_t(case["g"]), noise_scale=0.0)
    assert out.shape == case["out_nonoise"].shape
    assert _maxdiff(out, case["out_nonoise"]) <= TOL


def test_freevc_s_matches_reference_short_and_long_mel(nets: dict) -> None:
    case = load_case(CASE_FILES["freevc-s"])
    net, c = nets["freevc-s"], _t(case["c"])
    out = net.infer(c, mel=_t(case["mel"]), noise_scale=0.0)  # 125 frames: one window
    assert out.shape == case["out_nonoise"].shape
    assert _maxdiff(out, case["out_nonoise"]) <= TOL
    # 225 frames: three windows, plain mean of the partial embeddings (|g| < 1)
    g_long = net.speaker_embedding(_t(case["mel_long"]))
    assert _maxdiff(g_long, case["g_from_mel_long"]) <= 1e-5
    assert float(g_long.norm()) < 0.999
    out_long = net.infer(c, mel=_t(case["mel_long"]), noise_scale=0.0)
    head = case["out_nonoise_long_head"]
    assert _maxdiff(out_long[..., :head.shape[-1]], head) <= TOL
    # a cached embedding gives the same audio as the mel it came from
    assert torch.equal(net.infer(c, g=g_long, noise_scale=0.0), out_long)


def test_mel_spectrogram_matches_official() -> None:
    case = load_case(CASE_FILES["freevc-s"])
    wav = _t(case["wav_tgt_head"])[None]  # the first 16000 samples of the reference wav
    mel = mel_spectrogram(wav)
    assert mel.shape == (1, 80, num_frames(16000)) == (1, 80, 50)
    # frames 0..47 never reach the end of the cropped wav, so they equal the reference frames
    # (log-mel: the FFT's last bits differ between CPUs; 4.5e-5 measured on an AMD EPYC, 0 on a Xeon)
    assert _maxdiff(mel[..., :48], case["mel"][..., :48]) <= TOL
    assert num_frames(40000) == case["mel"].shape[-1] and num_frames(72000) == case["mel_long"].shape[-1]


def test_seeded_noise_matches_official_sampled_path(nets: dict) -> None:
    case = load_case(CASE_FILES["freevc"])
    c, g = _t(case["c"]), _t(case["g"])
    torch.manual_seed(int(case["eps_seed"]))
    out = nets["freevc"].infer(c, g=g, noise_scale=1.0)
    head = case["out_eps_head"]
    assert _maxdiff(out[..., :head.shape[-1]], head) <= TOL
    torch.manual_seed(7)
    a = nets["freevc"].infer(c, g=g, noise_scale=0.5)
    torch.manual_seed(7)
    b = nets["freevc"].infer(c, g=g, noise_scale=0.5)
    assert torch.equal(a, b)
    assert float((a - nets["freevc"].infer(c, g=g, noise_scale=0.0)).abs().max()) > 1e-3


@pytest.mark.parametrize("config,hop", [("freevc", 320), ("freevc-s", 320), ("freevc-24", 480)])
def test_output_length_and_batch(nets: dict, config: str, hop: int) -> None:
    net = nets[config]
    assert net.hop == hop and net.sampling_rate == (24000 if config == "freevc-24" else 16000)
    gen = torch.Generator().manual_seed(0)
    c = 0.5 * torch.randn(2, 1024, 9, generator=gen)
    if config == "freevc-s":
        kw = {"mel": torch.randn(2, 80, 140, generator=gen) - 4}  # two windows per item
    else:
        kw = {"g": torch.nn.functional.normalize(torch.rand(2, 256, generator=gen), dim=1)}
    out = net.infer(c, noise_scale=0.0, **kw)
    assert out.shape == (2, 1, 9 * hop)
    assert out.abs().max() < 1
    # batch items are independent: item 1 alone gives the same audio
    one = net.infer(c[1:], noise_scale=0.0, **{k: v[1:] for k, v in kw.items()})
    assert float((out[1:] - one).abs().max()) <= TOL


# ---- checkpoint files ------------------------------------------------------------------------

def test_parametrization_names_and_module_prefix_load(tmp_path: Path, raw_sd: dict,
                                                      nets: dict) -> None:
    sd = OrderedDict()
    for k, v in raw_sd.items():
        k = k.replace(".weight_g", ".parametrizations.weight.original0")
        k = k.replace(".weight_v", ".parametrizations.weight.original1")
        sd["module." + k] = v
    path = tmp_path / "new_names.pth"
    torch.save({"model": sd, "iteration": 1, "optimizer": None, "learning_rate": 2e-4}, path)
    net = load_freevc(path, config="freevc")
    c, g = torch.randn(1, 1024, 6), torch.nn.functional.normalize(torch.rand(1, 256), dim=1)
    assert torch.equal(net.infer(c, g=g, noise_scale=0.0), nets["freevc"].infer(c, g=g, noise_scale=0.0))


def test_loaded_model_is_folded_eval_and_frozen(nets: dict) -> None:
    net = nets["freevc"]
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert not hasattr(net, "enc_q")
    names = [n for n, _ in net.named_parameters()]
    assert not any("weight_g" in n or "weight_v" in n or "parametrizations" in n for n in names)


def _expect_load_error(path: Path, config: str = "freevc", *fragments: str) -> str:
    with pytest.raises(ModelLoadError) as e:
        load_freevc(path, config=config)
    msg = str(e.value)
    assert str(path) in msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_missing_and_truncated_files(tmp_path: Path, ckpt: dict) -> None:
    _expect_load_error(tmp_path / "nope.pth", "freevc", "not found")
    data = ckpt["freevc"].read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    _expect_load_error(tmp_path / "cut.pth", "freevc", "truncated or corrupt")


def test_wrong_keys_and_shapes(tmp_path: Path, raw_sd: dict) -> None:
    sd = OrderedDict(raw_sd)
    sd["dec.conv_pre.weightX"] = sd.pop("dec.conv_pre.weight")
    torch.save({"model": sd}, tmp_path / "keys.pth")
    _expect_load_error(tmp_path / "keys.pth", "freevc", "missing keys", "dec.conv_pre.weight",
                       "unexpected keys")
    sd = OrderedDict(raw_sd)
    sd["dec.cond.weight"] = torch.zeros(512, 128, 1)
    torch.save({"model": sd}, tmp_path / "shape.pth")
    _expect_load_error(tmp_path / "shape.pth", "freevc", "wrong shapes", "dec.cond.weight")
    # the training-only posterior encoder is part of the official key set
    sd = OrderedDict((k, v) for k, v in raw_sd.items() if not k.startswith("enc_q."))
    torch.save({"model": sd}, tmp_path / "no_enc_q.pth")
    _expect_load_error(tmp_path / "no_enc_q.pth", "freevc", "missing keys", "enc_q.")


def test_wrong_variant_names_the_right_config(ckpt: dict) -> None:
    _expect_load_error(ckpt["freevc-s"], "freevc", "freevc-s checkpoint", "enc_spk")
    _expect_load_error(ckpt["freevc-s"], "freevc-24", "freevc-s checkpoint")
    _expect_load_error(ckpt["freevc"], "freevc-s", "freevc or freevc-24 checkpoint")


def test_other_models_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wav2lip_like.pth"
    torch.save({"state_dict": {"module.audio_encoder.0.conv_block.0.weight": torch.zeros(2, 1, 3, 3)},
                "optimizer": None, "global_step": 0, "global_epoch": 0}, path)
    _expect_load_error(path, "freevc", "not a FreeVC (freevc) checkpoint", "Wav2Lip")


def test_unknown_config(ckpt: dict) -> None:
    with pytest.raises(ValueError, match="'freevc', 'freevc-s', 'freevc-24'"):
        load_freevc(ckpt["freevc"], config="freevc-32")


# ---- input validation ------------------------------------------------------------------------

def test_infer_rejects_bad_inputs(nets: dict) -> None:
    c, g, mel = torch.zeros(1, 1024, 5), torch.ones(1, 256) / 16, torch.zeros(1, 80, 20)
    cases = [
        (nets["freevc"], {"c": c}, "needs g"),
        (nets["freevc"], {"c": c, "g": g, "mel": mel}, "not mel"),
        (nets["freevc"], {"c": c, "g": torch.ones(1, 192)}, r"g must be \[B, 256\]"),
        (nets["freevc"], {"c": c, "g": torch.ones(2, 256)}, "batch sizes differ"),
        (nets["freevc"], {"c": torch.zeros(1, 768, 5), "g": g}, r"\[B, 1024, T\]"),
        (nets["freevc"], {"c": c, "g": g, "noise_scale": -1.0}, "noise_scale"),
        (nets["freevc-s"], {"c": c}, "needs mel"),
        (nets["freevc-s"], {"c": c, "mel": torch.zeros(1, 20, 80)}, r"\[B, 80, F\]"),
        (nets["freevc-s"], {"c": c, "g": g, "mel": mel}, "not both"),
    ]
    for net, kw, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            net.infer(**kw)
    with pytest.raises(ValueError, match="more than 480 samples"):
        mel_spectrogram(torch.zeros(1, 400))
