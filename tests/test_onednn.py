"""Prepacked oneDNN kernels (models/onednn.py): same results as the eager models, in the product.

The packed path is what the optimized service runs on a CPU (PACK_WEIGHTS, default on), so it is
held to the reference outputs of the official code like the eager one, and to the eager model
itself on shapes the service produces (partial batches, other lengths).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models import onednn
from models.onednn import PackedConv, PackedLinear
from models.wav2lip import ConvBlock, load_wav2lip
from models.wavlm import load_wavlm
from service.bundle import load_bundle
from service.weights.formula import write_test_checkpoint

from .conftest import load_case

pytestmark = pytest.mark.skipif(not onednn.available(torch.float32), reason="this torch build has no oneDNN")
LIMIT = 1e-4  # vs the official implementation (the reference cases)


@pytest.mark.parametrize("shape", [(7, 32), (2, 5, 32), (1, 32)])
def test_packed_linear_equals_linear(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(32, 48)
    x = torch.randn(*shape)
    with torch.inference_mode():
        got, want = PackedLinear(lin)(x), lin(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)


def test_packed_linear_takes_non_contiguous_input() -> None:
    lin = nn.Linear(16, 8)
    x = torch.randn(2, 4, 3, 16).transpose(1, 2)  # WavLM's per-head gate input is such a view
    with torch.inference_mode():
        assert torch.allclose(PackedLinear(lin)(x), lin(x), atol=1e-5)


@pytest.mark.parametrize("residual", [False, True])
def test_packed_conv_fuses_relu_and_residual(residual: bool) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(3, 8, 12, 12).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        want = torch.relu(conv(x) + x) if residual else torch.relu(conv(x))
        got = PackedConv(conv)(x, "relu", add=x if residual else None)
    assert torch.allclose(got, want, atol=1e-5)


def test_packed_transposed_conv() -> None:
    torch.manual_seed(0)
    up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = PackedConv(up)(x, "relu")
        assert got.shape == (2, 4, 12, 12)
        assert torch.allclose(got, torch.relu(up(x)), atol=1e-5)
        with pytest.raises(ValueError, match="no fused add"):
            PackedConv(up)(x, add=got)


@pytest.fixture(scope="module")
def wav2lip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_checkpoint("wav2lip", tmp_path_factory.mktemp("w2l") / "wav2lip_gan.pth")


def test_packed_wav2lip_reproduces_official_forward(wav2lip_file: Path) -> None:
    c = load_case("wav2lip_case.npz")
    faces = (c["faces_u8"].astype(np.float64) / 255).astype(np.float32)
    model = load_wav2lip(wav2lip_file).pack()
    assert all(isinstance(m.conv_block, PackedConv) for m in model.modules() if isinstance(m, ConvBlock))
    with torch.inference_mode():
        out = model(torch.from_numpy(c["mel"]), torch.from_numpy(faces)).numpy()
    assert np.abs(out - c["out"]).max() <= LIMIT


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_packed_wav2lip_equals_eager_on_every_batch_size(wav2lip_file: Path, batch: int) -> None:
    """The engine's last batch is any size from 1 to the batch size; the encoder/decoder split
    (face memo) goes through the packed blocks too."""
    eager, packed = load_wav2lip(wav2lip_file), load_wav2lip(wav2lip_file).pack()
    torch.manual_seed(batch)
    faces = torch.rand(batch, 6, 96, 96).contiguous(memory_format=torch.channels_last)
    mel = torch.randn(batch, 1, 80, 16)
    with torch.inference_mode():
        want = eager(mel, faces)
        got = packed.decode(mel, packed.encode_faces(faces))
    assert float((got - want).abs().max()) <= 1e-5


def test_pack_is_idempotent_and_keeps_device_and_dtype_visible(wav2lip_file: Path) -> None:
    model = load_wav2lip(wav2lip_file, dtype=torch.bfloat16).pack().pack()
    param = next(model.parameters())  # what the engine reads the model's device and dtype from
    assert (param.device.type, param.dtype) == ("cpu", torch.bfloat16)


def test_packed_wavlm_reproduces_official_features(tmp_path: Path) -> None:
    with np.load(Path(__file__).parent / "data" / "wavlm_case.npz") as z:
        wav, feats = z["wav"], z["feats"]
    ckpt = write_test_checkpoint("wavlm", tmp_path / "WavLM-small.pt", layers=2)
    model = load_wavlm(ckpt).pack()
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    got = model.extract(torch.from_numpy(wav)).transpose(1, 2)
    assert float((got.double() - torch.from_numpy(feats).double()).abs().max()) <= LIMIT
    # another length than the one the first call saw: packed linears are shape-independent
    short = torch.from_numpy(wav[:, :8000])
    eager = load_wavlm(ckpt)
    assert float((model.extract(short) - eager.extract(short)).abs().max()) <= 1e-5


def test_bundle_packs_on_cpu_only_when_asked(tmp_path: Path) -> None:
    write_test_checkpoint("wav2lip", tmp_path / "wav2lip_gan.pth")
    write_test_checkpoint("wavlm", tmp_path / "WavLM-Large.pt", layers=2)
    only = ("wav2lip", "wavlm")
    plain = load_bundle(tmp_path, torch.device("cpu"), only=only, warm=False)
    packed = load_bundle(tmp_path, torch.device("cpu"), only=only, warm=True, pack=True)
    assert not any(isinstance(m, PackedLinear) for m in plain.wavlm.modules())
    assert any(isinstance(m, PackedLinear) for m in packed.wavlm.modules())
    assert any(isinstance(m, PackedConv) for m in packed.wav2lip.modules())
    # the parameter counts in timings and /health are the model's, not what packing leaves visible
    assert [t.parameters for t in packed.timings] == [t.parameters for t in plain.timings]


def test_fused_relu_in_bf16_stays_within_rounding(wav2lip_file: Path) -> None:
    """bf16: the fused ReLU/add run before the result is rounded to bf16, so packed and eager
    differ by rounding only (a few bf16 steps on outputs in (0, 1))."""
    eager = load_wav2lip(wav2lip_file, dtype=torch.bfloat16)
    packed = load_wav2lip(wav2lip_file, dtype=torch.bfloat16).pack()
    torch.manual_seed(0)
    faces = torch.rand(4, 6, 96, 96, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    mel = torch.randn(4, 1, 80, 16, dtype=torch.bfloat16)
    with torch.inference_mode():
        diff = (packed(mel, faces).float() - eager(mel, faces).float()).abs()
    assert float(diff.max()) <= 4 * 2.0 ** -8 and float(diff.mean()) < 1e-3
