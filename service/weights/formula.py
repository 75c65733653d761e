"""Architecture-exact checkpoints with *generated* (untrained) weights, in the official layouts.

Real checkpoints cannot be downloaded everywhere (CI, offline demos), yet loading, shapes,
speed and the whole pipeline must be exercised for real. Every tensor here is drawn from its
own CPU generator seeded by ``sha256(f"{tag}:{name}")``, so a tensor depends only on (tag,
name, shape) and the files are reproducible bit for bit. The value rules match the team's
reference recipe (``shared/reference/recipe.py``), which is how our test vectors were made:

* BatchNorm statistics: mean 0.1·N, var 1 + 0.2·|N|; BN/LayerNorm weight 1 + 0.1·N; BN bias 0.1·N
* weight norm: ``weight_g`` (1 + 0.1·|N|)·gain, ``weight_v`` N
* LSTM weights N/√hidden, LSTM and other biases 0.05·N
* WavLM ``grep_a`` 1 + 0.1·N, embeddings 0.5·N
* 2-D kernels: a per-channel-pair mix times a smooth separable profile plus an iid part,
  so the random networks keep spatial structure instead of producing flat noise
* other matrices N·gain/√fan-in (transposed convolutions use the taps that reach one output)

THESE ARE NOT TRAINED WEIGHTS: outputs are deterministic noise with realistic shapes.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

SPEC_DIR = Path(__file__).parent / "specs"
DEFAULT_TAG = "dev-1"

Spec = list[tuple[str, tuple[int, ...], str]]

NOT_TRAINED_BANNER = (
    "WARNING: these checkpoints hold GENERATED weights, NOT TRAINED ones. They have the exact "
    "official architecture and file layout, so loading, speed and the pipeline are real, but "
    "their audio and video outputs are deterministic noise. Use `lipsync weights fetch` for "
    "the real models."
)

# kernels whose iid weights must stay iid: the audio encoder reduces to a 1x1 embedding and
# smooth kernels would make it blind to a shift of the mel window
_IID_2D = re.compile(r"(^|\.)audio_encoder\.")
_SMOOTH_IID_SHARE = 0.35
_TRANSPOSED = (
    re.compile(r"(^|\.)face_decoder_blocks\.[1-6]\.0\.conv_block\.0\.weight$"),
    re.compile(r"(^|\.)dec\.ups\.\d+\.weight(_v)?$"),
)
# gains keep the untrained networks informative (Wav2Lip's output depends on the mel, FreeVC's
# conditioning on a unit-norm 256-d embedding is O(1)); first match wins
_GAINS: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile(r"(^|\.)output_block\.1\.weight$"), 1.5),
    (re.compile(r"(^|\.)output_block\.0\."), 1.0),
    (re.compile(r"(^|\.)audio_encoder\."), 1.2),
    (re.compile(r"(^|\.)face_encoder_blocks\.0\."), 2.5),
    (re.compile(r"(^|\.)face_encoder_blocks\.1\."), 0.5),
    (re.compile(r"(^|\.)face_encoder_blocks\.[2-6]\."), 0.7),
    (re.compile(r"(^|\.)face_decoder_blocks\.[0-2]\."), 1.8),
    (re.compile(r"(^|\.)face_decoder_blocks\.[3-6]\."), 0.8),
    (re.compile(r"(^|\.)(cond|cond_layer)\.weight(_g)?$"), 16.0),
    (re.compile(r"(^|\.)enc_p\.proj\.weight$"), 0.5),
)


def read_spec(name: str) -> Spec:
    """Key list of an official checkpoint: ``name<TAB>[shape]<TAB>dtype`` lines."""
    spec: Spec = []
    for line in (SPEC_DIR / name).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")[:3]
            spec.append((key, tuple(json.loads(shape)), dtype))
    return spec


def wavlm_spec(layers: int) -> Spec:
    """WavLM-Large key list truncated to ``layers`` transformer layers."""
    keep = re.compile(r"encoder\.layers\.(\d+)\.")
    out = []
    for key, shape, dtype in read_spec("wavlm_large.tsv"):
        m = keep.match(key)
        if m is None or int(m.group(1)) < layers:
            out.append((key, shape, dtype))
    return out


def wavlm_cfg(layers: int) -> dict:
    cfg = json.loads((SPEC_DIR / "wavlm_large_cfg.json").read_text(encoding="utf-8"))
    cfg["encoder_layers"] = layers
    return cfg


def _draw(tag: str, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    seed = int(hashlib.sha256(f"{tag}:{name}".encode()).hexdigest()[:8], 16)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def _gain(name: str) -> float:
    return next((g for rx, g in _GAINS if rx.search(name)), 1.0)


def _profile(k: int, triangle: bool) -> torch.Tensor:
    if triangle:  # bilinear-interpolation profile, peak 1
        c, half = (k - 1) / 2, (k + 1) / 2
        return torch.tensor([1 - abs(j - c) / half for j in range(k)], dtype=torch.float32)
    row = torch.tensor([math.comb(k - 1, j) for j in range(k)], dtype=torch.float32)
    return row / row.sum()  # binomial blur


def _tensor(tag: str, name: str, shape: tuple[int, ...], dtype: str, names: set[str]) -> torch.Tensor:
    leaf = name.rsplit(".", 1)[-1]
    parent = name[: -len(leaf) - 1] if "." in name else ""
    if leaf == "num_batches_tracked" or not dtype.startswith("float"):
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    n = _draw(tag, name, shape)
    transposed = any(rx.search(name) for rx in _TRANSPOSED)
    if leaf == "running_mean":
        return 0.1 * n
    if leaf == "running_var":
        return 1.0 + 0.2 * n.abs()
    is_bn = len(shape) == 1 and f"{parent}.running_mean" in names
    if is_bn and leaf == "weight":
        return 1.0 + 0.1 * n
    if is_bn and leaf == "bias":
        return 0.1 * n
    if leaf == "weight_g":
        return (1.0 + 0.1 * n.abs()) * _gain(name)
    if leaf == "weight_v":
        return n
    if re.fullmatch(r"weight_(ih|hh)_l\d+(_reverse)?", leaf):
        return n / math.sqrt(shape[0] / 4)
    if re.fullmatch(r"bias_(ih|hh)_l\d+(_reverse)?", leaf):
        return 0.05 * n
    if leaf == "grep_a":
        return 1.0 + 0.1 * n
    if name.endswith("relative_attention_bias.weight") or leaf == "mask_emb":
        return 0.5 * n
    if leaf == "bias":
        return 0.05 * n
    if leaf == "weight" and len(shape) == 1:
        return 1.0 + 0.1 * n
    if len(shape) == 4 and shape[2] * shape[3] > 1 and not _IID_2D.search(name):
        mix = _draw(tag, name + "#mix", shape[:2])
        kernel = torch.outer(_profile(shape[2], transposed), _profile(shape[3], transposed))
        w = mix[:, :, None, None] * kernel + _SMOOTH_IID_SHARE * n / math.sqrt(shape[2] * shape[3])
        return w * (_gain(name) / math.sqrt(shape[0] if transposed else shape[1]))
    if len(shape) >= 2 and transposed:
        taps = shape[0] * math.prod(shape[2:]) / 2 ** (len(shape) - 2)
        return n * (_gain(name) / math.sqrt(taps))
    if len(shape) >= 2:
        return n * (_gain(name) / math.sqrt(math.prod(shape[1:])))
    return 0.05 * n


def generate_state_dict(spec: Spec, tag: str = DEFAULT_TAG) -> OrderedDict[str, torch.Tensor]:
    """Every tensor of ``spec``, generated from (tag, name, shape), in the spec's order."""
    names = {key for key, _, _ in spec}
    return OrderedDict((key, _tensor(tag, key, shape, dtype, names).contiguous())
                       for key, shape, dtype in spec)


def fingerprint(sd: OrderedDict[str, torch.Tensor]) -> float:
    """Position-weighted float64 checksum; equals the reference recipe's ``fingerprint``."""
    total = 0.0
    for i, v in enumerate(sd.values()):
        total += (i + 1) * float(v.double().sum()) + float(v.double().abs().sum()) * 1e-3
    return total


# ---- official layouts ----------------------------------------------------------------------

def _save_wav2lip(path: Path, tag: str, module_prefix: bool = True, legacy: bool = True) -> None:
    sd = generate_state_dict(read_spec("wav2lip.tsv"), tag)
    if module_prefix:  # the release was trained with DataParallel
        sd = OrderedDict(("module." + k, v) for k, v in sd.items())
    torch.save({"state_dict": sd, "optimizer": None, "global_step": 0, "global_epoch": 0}, path,
               _use_new_zipfile_serialization=not legacy)


def _freevc_saver(spec_name: str) -> Callable[..., None]:
    def save(path: Path, tag: str) -> None:
        sd = generate_state_dict(read_spec(spec_name), tag)
        torch.save({"model": sd, "iteration": 0, "optimizer": None, "learning_rate": 2e-4}, path)
    return save


def _save_wavlm(path: Path, tag: str, layers: int = 24) -> None:
    torch.save({"cfg": wavlm_cfg(layers), "model": generate_state_dict(wavlm_spec(layers), tag)}, path)


def _save_speaker(path: Path, tag: str) -> None:
    sd = generate_state_dict(read_spec("speaker_encoder.tsv"), tag)
    torch.save({"step": 0, "model_state": sd, "optimizer_state": None}, path)


_WRITERS: dict[str, Callable[..., None]] = {
    "wav2lip": _save_wav2lip,
    "freevc": _freevc_saver("freevc.tsv"),
    "freevc-s": _freevc_saver("freevc_s.tsv"),
    "freevc-24": _freevc_saver("freevc.tsv"),  # same tensors; only strides differ
    "wavlm": _save_wavlm,
    "speaker": _save_speaker,
}
KINDS = tuple(_WRITERS)


def write_test_checkpoint(kind: str, path: str | Path, tag: str = DEFAULT_TAG, **options: object) -> Path:
    """Write a generated-weights checkpoint of ``kind`` (one of :data:`KINDS`) to ``path``.

    Options: wav2lip ``module_prefix``/``legacy`` (default True/True, as released);
    wavlm ``layers`` (default 24, the Large structure). The file is written to a temporary
    name and renamed, so an interrupted run never leaves a half-written checkpoint.
    """
    if kind not in _WRITERS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; expected one of {', '.join(KINDS)}")
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        _WRITERS[kind](tmp, tag, **options)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
