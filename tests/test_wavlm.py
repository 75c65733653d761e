"""WavLM content encoder (unilm WavLM-Large structure): reference features, HF folders, lengths, errors.

``data/wavlm_case.npz`` holds 2 s of raw 16 kHz speech (``wav`` [1, 32000]), the official unilm
``extract_features(wav)[0]`` (``feats`` [1, 99, 1024]) of a 2-layer WavLM-Large-structured model
with generated weights (tag dev-1), and the ``fingerprint`` of those weights.
"""
from __future__ import annotations

import json
import re
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import models.wavlm as wavlm_mod
import models.wavlm_layers as layers_mod
from models import ModelLoadError
from models.wavlm import WavLM, WavLMConfig, load_wavlm, read_safetensors
from service.weights.formula import fingerprint, write_test_checkpoint

CASE = Path(__file__).parent / "data" / "wavlm_case.npz"
LIMIT = 1e-4       # vs the official implementation
SAME = 1e-5        # the same weights through another file layout / code path


@pytest.fixture(scope="module")
def case() -> dict[str, np.ndarray]:
    with np.load(CASE) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_checkpoint("wavlm", tmp_path_factory.mktemp("wavlm") / "WavLM-small.pt", layers=2)


@pytest.fixture(scope="module")
def unilm(ckpt: Path) -> dict:
    """The checkpoint's contents: {"cfg": dict, "model": state_dict} (memory-mapped)."""
    return torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)


@pytest.fixture(scope="module")
def model(ckpt: Path) -> WavLM:
    return load_wavlm(ckpt)


@pytest.fixture(scope="module")
def ref_out(model: WavLM, case: dict[str, np.ndarray]) -> torch.Tensor:
    return model.extract(torch.from_numpy(case["wav"]))


def _maxdiff(a: torch.Tensor, b: torch.Tensor | np.ndarray) -> float:
    return float((a.double() - torch.as_tensor(b).double()).abs().max())


# ---- reference ---------------------------------------------------------------------------------

def test_reproduces_official_features(ref_out: torch.Tensor, case: dict[str, np.ndarray], unilm: dict) -> None:
    ref = np.transpose(case["feats"], (0, 2, 1))                       # [1, 1024, 99]
    assert tuple(ref_out.shape) == ref.shape == (1, 1024, 99)
    assert ref_out.dtype == torch.float32
    assert torch.isfinite(ref_out).all()
    diff = _maxdiff(ref_out, ref)
    if diff > LIMIT:
        # tell "the weight generator changed" apart from "the implementation is wrong"
        same = fingerprint(OrderedDict(unilm["model"])) == pytest.approx(float(case["fingerprint"]), rel=1e-9)
        pytest.fail(f"max|diff| {diff:.3g} > {LIMIT:g}; generated weights "
                    f"{'match' if same else 'DIFFER FROM'} the ones the reference was made with")


def test_loaded_model_is_complete_and_frozen(model: WavLM) -> None:
    tensors = list(model.parameters()) + list(model.buffers())
    assert not any(t.is_meta for t in tensors)
    assert not any(t.requires_grad for t in model.parameters())
    assert not model.training
    assert model.cfg.max_distance == 800 and model.cfg.layer_norm_first and model.cfg.encoder_layers == 2


def test_blocked_paths_match(model: WavLM, case: dict[str, np.ndarray], ref_out: torch.Tensor,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    # the conv stack in 40-frame chunks and attention in query-row blocks give the same features
    monkeypatch.setattr(wavlm_mod, "CONV_CHUNK_FRAMES", 40)
    monkeypatch.setattr(layers_mod, "ATTN_BLOCK_ELEMS", 16 * 99 * 30)
    with torch.inference_mode():
        out = model.extract(torch.from_numpy(case["wav"]))
    assert _maxdiff(out, ref_out) <= SAME


def test_batch_items_are_independent(model: WavLM, case: dict[str, np.ndarray]) -> None:
    wav = torch.from_numpy(case["wav"])[:, 4000:12000]
    batch = torch.cat([wav, 0.3 * wav.flip(1)])
    out = model.extract(batch)
    assert _maxdiff(out[:1], model.extract(batch[:1])) <= SAME
    assert _maxdiff(out[1:], model.extract(batch[1:])) <= SAME


# ---- lengths -----------------------------------------------------------------------------------

def test_frame_formula_matches_conv_stack(model: WavLM) -> None:
    for n in range(400, 20000, 7):
        assert model.num_frames(n) == (n - 400) // 320 + 1
    assert model.cfg.min_samples == 400 and model.cfg.hop == 320


@pytest.mark.parametrize("n", [400, 719, 720, 1039, 4321])
def test_output_length(model: WavLM, n: int) -> None:
    wav = 0.1 * torch.randn(1, n, generator=torch.Generator().manual_seed(n))
    out = model.extract(wav)
    assert tuple(out.shape) == (1, 1024, (n - 400) // 320 + 1)


@pytest.mark.parametrize("n", [0, 1, 399])
def test_too_short_raises(model: WavLM, n: int) -> None:
    with pytest.raises(ValueError, match="at least 400 samples"):
        model.extract(torch.zeros(1, n))


def test_bad_input_shape_raises(model: WavLM) -> None:
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        model.extract(torch.zeros(16000))


# ---- Hugging Face folders ----------------------------------------------------------------------

# unilm -> Hugging Face transformers names (the README table), written independently of the loader
_TO_HF = (
    (r"mask_emb", "masked_spec_embed"),
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"feature_extractor.conv_layers.\1.conv.weight"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.bias", "encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.weight_g", "encoder.pos_conv_embed.conv.{g}"),
    (r"encoder\.pos_conv\.0\.weight_v", "encoder.pos_conv_embed.conv.{v}"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.0\.self_attn\.relative_attention_bias\.weight", "encoder.layers.0.attention.rel_attn_embed.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_a", r"encoder.layers.\1.attention.gru_rel_pos_const"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_linear\.(weight|bias)", r"encoder.layers.\1.attention.gru_rel_pos_linear.\2"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
)
_WEIGHT_NORM_NAMES = {"parametrizations": ("parametrizations.weight.original0", "parametrizations.weight.original1"),
                      "legacy": ("weight_g", "weight_v")}


def to_hf(sd: dict, weight_norm: str = "parametrizations", prefix: str = "") -> OrderedDict:
    """A unilm WavLM state_dict under Hugging Face ``WavLMModel`` names."""
    g, v = _WEIGHT_NORM_NAMES[weight_norm]
    out = OrderedDict()
    for key, value in sd.items():
        for src, dst in _TO_HF:
            if re.fullmatch(src, key):
                out[prefix + re.sub(src, dst.format(g=g, v=v), key)] = value
                break
        else:
            raise AssertionError(f"no Hugging Face name for {key}")
    return out


def hf_config(cfg: dict) -> dict:
    """config.json of microsoft/wavlm-large, with the layer count of ``cfg``."""
    return {
        "model_type": "wavlm", "architectures": ["WavLMModel"], "hidden_size": 1024,
        "num_hidden_layers": cfg["encoder_layers"], "num_attention_heads": 16, "intermediate_size": 4096,
        "hidden_act": "gelu", "feat_extract_norm": "layer", "feat_extract_activation": "gelu",
        "do_stable_layer_norm": True, "conv_bias": False, "conv_dim": [512] * 7,
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16, "num_buckets": 320,
        "max_bucket_distance": 800, "layer_norm_eps": 1e-5, "mask_time_prob": 0.075, "vocab_size": 32,
    }


def write_safetensors(sd: dict, path: Path) -> None:
    """Minimal float32 safetensors writer (8-byte header size, JSON header, raw little-endian data)."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for key, value in sd.items():
        blob = value.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[key] = {"dtype": "F32", "shape": list(value.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            f.write(blob)


def make_hf_folder(folder: Path, unilm: dict, weight_norm: str = "parametrizations", prefix: str = "",
                   fmt: str = "bin") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config(unilm["cfg"])))
    sd = to_hf(unilm["model"], weight_norm, prefix)
    if prefix:  # a task head next to the encoder (WavLMForCTC)
        sd["lm_head.weight"] = torch.zeros(32, 1024)
        sd["lm_head.bias"] = torch.zeros(32)
    if fmt == "bin":
        torch.save(sd, folder / "pytorch_model.bin")
    else:
        write_safetensors(sd, folder / "model.safetensors")
    return folder


@pytest.mark.parametrize("weight_norm,prefix,fmt", [
    ("parametrizations", "", "bin"),            # transformers >= 4.x spelling, WavLMModel file
    ("legacy", "wavlm.", "safetensors"),        # weight_g/weight_v, task-head file (WavLMForCTC)
])
def test_hf_folder_gives_the_same_features(tmp_path: Path, unilm: dict, ref_out: torch.Tensor,
                                           case: dict[str, np.ndarray], weight_norm: str, prefix: str,
                                           fmt: str) -> None:
    folder = make_hf_folder(tmp_path / "wavlm-large", unilm, weight_norm, prefix, fmt)
    model = load_wavlm(folder)
    assert model.cfg.max_distance == 800 and model.cfg.extractor_mode == "layer_norm"
    assert _maxdiff(model.extract(torch.from_numpy(case["wav"])), ref_out) <= SAME
    # the weight file named directly finds its config.json beside it
    weights = folder / ("pytorch_model.bin" if fmt == "bin" else "model.safetensors")
    assert load_wavlm(weights).state_dict().keys() == model.state_dict().keys()


def test_hf_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="config.json"):
        load_wavlm(tmp_path)


def test_hf_folder_of_another_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(ModelLoadError, match="hubert"):
        load_wavlm(tmp_path)


def test_hf_folder_without_weights(tmp_path: Path, unilm: dict) -> None:
    (tmp_path / "config.json").write_text(json.dumps(hf_config(unilm["cfg"])))
    with pytest.raises(ModelLoadError, match="no weights"):
        load_wavlm(tmp_path)


def test_truncated_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    write_safetensors({"a": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        read_safetensors(path)


# ---- errors: every one names the file ------------------------------------------------------------

def _save(path: Path, cfg: dict, sd: dict) -> Path:
    torch.save({"cfg": cfg, "model": sd}, path)
    return path


def test_wrong_keys(tmp_path: Path, unilm: dict) -> None:
    sd = OrderedDict(unilm["model"])
    sd["encoder.layers.1.fc_1.weight"] = sd.pop("encoder.layers.1.fc1.weight")
    path = _save(tmp_path / "renamed.pt", unilm["cfg"], sd)
    with pytest.raises(ModelLoadError) as e:
        load_wavlm(path)
    msg = str(e.value)
    assert str(path) in msg and "'encoder.layers.1.fc1.weight'" in msg and "'encoder.layers.1.fc_1.weight'" in msg


def test_wrong_shapes(tmp_path: Path, unilm: dict) -> None:
    sd = OrderedDict(unilm["model"])
    sd["encoder.layers.0.self_attn.grep_a"] = torch.ones(1, 8, 1, 1)
    path = _save(tmp_path / "shapes.pt", unilm["cfg"], sd)
    with pytest.raises(ModelLoadError, match=r"wrong shapes: encoder\.layers\.0\.self_attn\.grep_a") as e:
        load_wavlm(path)
    assert str(path) in str(e.value)


def test_truncated_file(tmp_path: Path, ckpt: Path) -> None:
    path = tmp_path / "truncated.pt"
    with open(ckpt, "rb") as f:
        path.write_bytes(f.read(5_000_000))
    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        load_wavlm(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "WavLM-Large.pt"
    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        load_wavlm(path)


@pytest.mark.parametrize("layout", ["freevc", "bare"])
def test_not_a_wavlm_checkpoint(tmp_path: Path, layout: str) -> None:
    sd = OrderedDict([("enc_p.pre.weight", torch.zeros(4, 4)), ("dec.conv_pre.weight", torch.zeros(4, 4))])
    obj = {"model": sd, "iteration": 0, "optimizer": None, "learning_rate": 2e-4} if layout == "freevc" else sd
    path = tmp_path / "G_0.pth"
    torch.save(obj, path)
    with pytest.raises(ModelLoadError, match="is not a WavLM checkpoint") as e:
        load_wavlm(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("change", [
    {"extractor_mode": "conv2d"},
    {"activation_fn": "glu"},
    {"conv_feature_layers": "__import__('os').getcwd()"},
    {"encoder_attention_heads": 7},
])
def test_unsupported_config(tmp_path: Path, unilm: dict, change: dict) -> None:
    path = _save(tmp_path / "cfg.pt", dict(unilm["cfg"], **change), {})
    with pytest.raises(ModelLoadError, match="unsupported WavLM config") as e:
        load_wavlm(path)
    assert str(path) in str(e.value)


# ---- config ------------------------------------------------------------------------------------

def test_unilm_defaults_apply_to_missing_keys() -> None:
    cfg = WavLMConfig.from_unilm({"encoder_layers": 2, "unknown_key": 1})
    assert cfg.max_distance == 1280 and cfg.extractor_mode == "default" and cfg.encoder_layers == 2
    assert cfg.conv_layers == ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
