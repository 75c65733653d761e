"""models.s3fd: face-alignment's S3FD network without face-alignment, loaded strictly."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from models import ModelLoadError
from models.s3fd import S3FD, S3FDConfig, load_s3fd

TOLERANCE = 1e-5

# face-alignment 1.5.0's s3fd, read off its source: convolution -> (out, in, kernel)
CONVS = {
    "conv1_1": (64, 3, 3), "conv1_2": (64, 64, 3),
    "conv2_1": (128, 64, 3), "conv2_2": (128, 128, 3),
    "conv3_1": (256, 128, 3), "conv3_2": (256, 256, 3), "conv3_3": (256, 256, 3),
    "conv4_1": (512, 256, 3), "conv4_2": (512, 512, 3), "conv4_3": (512, 512, 3),
    "conv5_1": (512, 512, 3), "conv5_2": (512, 512, 3), "conv5_3": (512, 512, 3),
    "fc6": (1024, 512, 3), "fc7": (1024, 1024, 1),
    "conv6_1": (256, 1024, 1), "conv6_2": (512, 256, 3),
    "conv7_1": (128, 512, 1), "conv7_2": (256, 128, 3),
    "conv3_3_norm_mbox_conf": (4, 256, 3), "conv3_3_norm_mbox_loc": (4, 256, 3),
    "conv4_3_norm_mbox_conf": (2, 512, 3), "conv4_3_norm_mbox_loc": (4, 512, 3),
    "conv5_3_norm_mbox_conf": (2, 512, 3), "conv5_3_norm_mbox_loc": (4, 512, 3),
    "fc7_mbox_conf": (2, 1024, 3), "fc7_mbox_loc": (4, 1024, 3),
    "conv6_2_mbox_conf": (2, 512, 3), "conv6_2_mbox_loc": (4, 512, 3),
    "conv7_2_mbox_conf": (2, 256, 3), "conv7_2_mbox_loc": (4, 256, 3),
}
NORMS = {"conv3_3_norm": 256, "conv4_3_norm": 512, "conv5_3_norm": 512}


def face_alignment_s3fd() -> type[torch.nn.Module] | None:
    """face-alignment's ``s3fd`` class, or None where face-alignment is not installed.

    Its one source file is executed on its own: importing the package runs
    ``face_alignment/__init__.py``, which needs scikit-image and numba, the very dependencies
    this module exists to avoid (``make setup`` installs face-alignment with ``--no-deps``).
    """
    spec = importlib.util.find_spec("face_alignment")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(next(iter(spec.submodule_search_locations))) / "detection" / "sfd" / "net_s3fd.py"
    module_spec = importlib.util.spec_from_file_location("_face_alignment_net_s3fd", source)
    if module_spec is None or module_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.s3fd


def signal_keeping_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """Random weights in the released layout, He-scaled so that the deep levels' outputs are
    not vanishingly small (PyTorch's default init shrinks them ~50x over the trunk), with
    L2Norm scales near the released initial values: a comparison at 1e-5 then means something."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for k, v in S3FD().state_dict().items():
        if k.endswith("norm.weight"):
            sd[k] = 5.0 + 5.0 * torch.rand(v.shape, generator=g)
        elif v.dim() == 4:
            sd[k] = torch.randn(v.shape, generator=g) * math.sqrt(2.0 / v[0].numel())
        else:
            sd[k] = torch.randn(v.shape, generator=g) * 0.1
    return sd


def pixels(batch: int, height: int, width: int, seed: int = 7) -> torch.Tensor:
    """Mean-subtracted RGB at pixel scale, as the detector feeds the network."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=g) * 255.0 - 117.0


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("s3fd") / "s3fd-619a316812.pth"
    torch.save(signal_keeping_state_dict(0), path)
    return path


def test_layout_is_face_alignments() -> None:
    expected = {}
    for name, (cout, cin, k) in CONVS.items():
        expected[f"{name}.weight"] = (cout, cin, k, k)
        expected[f"{name}.bias"] = (cout,)
    expected.update({f"{name}.weight": (c,) for name, c in NORMS.items()})
    got = {k: tuple(v.shape) for k, v in S3FD().state_dict().items()}
    assert got == expected
    assert S3FD().conv4_3_norm.weight[0].item() == 8.0  # initial scales 10, 8, 5 as the original


def test_output_levels_and_shapes() -> None:
    cfg = S3FDConfig(vgg=(4, 4, 8, 8, 8), fc=16, extra=((8, 8), (4, 8)))  # tiny: shapes only
    h, w = 64, 96
    with torch.inference_mode():
        out = S3FD(cfg).eval()(pixels(2, h, w))
    sizes = [(h // 4, w // 4), (h // 8, w // 8), (h // 16, w // 16)]
    fc = (h // 32 + 4, w // 32 + 4)  # fc6 pads by 3: the original's grid is 4 cells larger
    sizes += [fc, ((fc[0] + 1) // 2, (fc[1] + 1) // 2)]
    sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    assert len(out) == 12
    for level, (hw, cls, reg) in enumerate(zip(sizes, out[0::2], out[1::2], strict=True)):
        assert tuple(cls.shape) == (2, 2, *hw), level
        assert tuple(reg.shape) == (2, 4, *hw), level


def test_first_level_takes_the_largest_background_logit() -> None:
    cfg = S3FDConfig(vgg=(4, 4, 8, 8, 8), fc=16, extra=((8, 8), (4, 8)))
    net = S3FD(cfg).eval()
    x = pixels(1, 32, 32)
    with torch.inference_mode():
        raw = net.conv3_3_norm_mbox_conf(net.conv3_3_norm(_conv3_3(net, x)))
        cls1 = net(x)[0]
    torch.testing.assert_close(cls1[:, 0], raw[:, :3].max(dim=1).values, rtol=0, atol=0)
    torch.testing.assert_close(cls1[:, 1], raw[:, 3], rtol=0, atol=0)


def _conv3_3(net: S3FD, x: torch.Tensor) -> torch.Tensor:
    for name in ("conv1_1", "conv1_2", "pool", "conv2_1", "conv2_2", "pool", "conv3_1", "conv3_2", "conv3_3"):
        x = torch.max_pool2d(x, 2, 2) if name == "pool" else torch.relu(getattr(net, name)(x))
    return x


def test_matches_face_alignments_network(weights: Path) -> None:
    s3fd = face_alignment_s3fd()
    if s3fd is None:
        pytest.skip("face-alignment is not installed (only this comparison uses it: "
                    "pip install --no-deps face-alignment==1.5.0)")
    reference = s3fd()
    reference.load_state_dict(torch.load(weights, weights_only=True), strict=True)
    reference.eval()
    ours = load_s3fd(weights)
    x = pixels(2, 96, 160)
    with torch.inference_mode():
        expected, got = reference(x), ours(x)
    assert len(got) == len(expected) == 12
    for level, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert a.shape == b.shape, level
        assert a.abs().max() > 0.1, level  # the comparison is not of near-zero maps
        diff = (a - b).abs().max().item()
        assert diff <= TOLERANCE, f"output {level}: max |diff| {diff:.3g}"


def test_loads_strictly_in_eval_mode(weights: Path) -> None:
    net = load_s3fd(weights)
    assert isinstance(net, S3FD) and not net.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in net.parameters())
    saved = torch.load(weights, weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    half = load_s3fd(weights, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())


def test_refuses_a_wrong_file(tmp_path: Path) -> None:
    path = tmp_path / "s3fd-619a316812.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 5, 5), "extra.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelLoadError) as e:
        load_s3fd(path)
    message = str(e.value)
    assert str(path) in message and "does not match the S3FD architecture" in message
    assert "missing keys: 'conv1_1.bias'" in message
    assert "unexpected keys: 'extra.weight'" in message
    assert "conv1_1.weight: file (64, 3, 5, 5) vs model (64, 3, 3, 3)" in message


def test_refuses_a_file_of_another_layout(tmp_path: Path) -> None:
    path = tmp_path / "wav2lip_gan.pth"
    torch.save({"state_dict": {"audio_encoder.0.weight": torch.zeros(1)}, "global_step": 1}, path)
    with pytest.raises(ModelLoadError, match=f"{path} is not an S3FD checkpoint: expected a bare state_dict"):
        load_s3fd(path)
    with pytest.raises(ModelLoadError, match="S3FD checkpoint not found"):
        load_s3fd(tmp_path / "missing.pth")
