"""Wav2Lip loads the released checkpoint layouts strictly and reproduces the official forward."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from models import ModelLoadError
from models.wav2lip import load_wav2lip
from service.weights.formula import write_test_checkpoint

from .conftest import load_case

TOL = 1e-4


@pytest.fixture(scope="module")
def case() -> dict[str, np.ndarray]:
    c = load_case("wav2lip_case.npz")
    return {"mel": c["mel"], "faces": (c["faces_u8"].astype(np.float64) / 255).astype(np.float32),
            "out": c["out"]}


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As released: ``module.`` prefixes, legacy (non-zip) serialization."""
    return write_test_checkpoint("wav2lip", tmp_path_factory.mktemp("w2l") / "wav2lip_gan.pth")


def _forward(model: torch.nn.Module, case: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(case["mel"]), torch.from_numpy(case["faces"])).numpy()


@pytest.mark.parametrize("module_prefix,legacy", [(True, True), (False, False)])
@pytest.mark.parametrize("fold", [True, False])
def test_reproduces_official_forward(tmp_path: Path, case: dict, module_prefix: bool, legacy: bool,
                                     fold: bool) -> None:
    path = write_test_checkpoint("wav2lip", tmp_path / "w.pth", module_prefix=module_prefix, legacy=legacy)
    model = load_wav2lip(path, device="cpu", fold=fold)
    out = _forward(model, case)
    assert out.shape == (4, 3, 96, 96)
    assert np.abs(out - case["out"]).max() <= TOL


def test_model_is_eval_and_frozen(released: Path) -> None:
    model = load_wav2lip(released)
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    # folded: no BatchNorm left, one conv per block
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_bare_state_dict_file_loads(tmp_path: Path, released: Path, case: dict) -> None:
    sd = torch.load(released, map_location="cpu")["state_dict"]
    torch.save(OrderedDict(sd), tmp_path / "bare.pth")
    assert np.abs(_forward(load_wav2lip(tmp_path / "bare.pth"), case) - case["out"]).max() <= TOL


def test_half_precision_dtype(released: Path) -> None:
    model = load_wav2lip(released, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_rejects_bad_input_shapes(released: Path) -> None:
    model = load_wav2lip(released)
    with pytest.raises(ValueError, match="mel must be"):
        model(torch.zeros(2, 80, 16), torch.zeros(2, 6, 96, 96))
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(torch.zeros(2, 1, 80, 16), torch.zeros(3, 6, 96, 96))


# ---- errors: each a ModelLoadError that names the file --------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.pth"
    with pytest.raises(ModelLoadError, match="not found") as e:
        load_wav2lip(p)
    assert str(p) in str(e.value)


def test_truncated_file(tmp_path: Path, released: Path) -> None:
    p = tmp_path / "cut.pth"
    p.write_bytes(released.read_bytes()[: released.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt") as e:
        load_wav2lip(p)
    assert str(p) in str(e.value)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.pth"
    p.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_wav2lip(p)


def test_wrong_keys(tmp_path: Path, released: Path) -> None:
    ck = torch.load(released, map_location="cpu")
    sd = ck["state_dict"]
    sd["module.extra.weight"] = sd.pop("module.output_block.1.weight")
    torch.save(ck, tmp_path / "keys.pth")
    with pytest.raises(ModelLoadError) as e:
        load_wav2lip(tmp_path / "keys.pth")
    msg = str(e.value)
    assert "keys.pth" in msg and "'output_block.1.weight'" in msg and "'extra.weight'" in msg


def test_wrong_shapes(tmp_path: Path, released: Path) -> None:
    ck = torch.load(released, map_location="cpu")
    ck["state_dict"]["module.output_block.1.weight"] = torch.zeros(3, 16, 1, 1)
    torch.save(ck, tmp_path / "shapes.pth")
    with pytest.raises(ModelLoadError, match=r"wrong shapes: output_block\.1\.weight: file \(3, 16, 1, 1\)"):
        load_wav2lip(tmp_path / "shapes.pth")


def test_freevc_file_given_to_wav2lip_loader(tmp_path: Path) -> None:
    p = write_test_checkpoint("freevc", tmp_path / "freevc.pth")
    with pytest.raises(ModelLoadError) as e:
        load_wav2lip(p)
    msg = str(e.value)
    assert "freevc.pth" in msg and "FreeVC checkpoint" in msg and "'model'" in msg


def test_not_a_dict(tmp_path: Path) -> None:
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ModelLoadError, match="a list, not a dict"):
        load_wav2lip(tmp_path / "list.pth")
