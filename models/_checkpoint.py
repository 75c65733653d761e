"""Reading official checkpoint files: shared by every loader in ``models/``.

Each loader reads a file with :func:`read_checkpoint`, picks its state_dict out of the
official layout, normalises the key names (``module.`` prefixes, legacy weight norm) and
checks them with :func:`check_state_dict` before building anything, so a wrong file fails
with a message a user can act on instead of a torch traceback.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import ModelLoadError

StateDict = "OrderedDict[str, torch.Tensor]"

_SHOW = 5  # keys named in an error message, per list


def read_checkpoint(path: str | os.PathLike[str], what: str) -> Any:
    """Load a torch checkpoint onto the CPU without running arbitrary pickled code.

    Zip-format files are memory-mapped, so the weights are paged in once instead of being
    copied; legacy (pre-1.6, non-zip) files are read normally. Optimizer state in the file
    stays on the CPU and is dropped by the caller.
    """
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{what} checkpoint not found: {p} (put the file there, or run "
                             f"`lipsync weights fetch --out {p.parent}`)")
    if not p.is_file():
        raise ModelLoadError(f"{what} checkpoint {p} is not a file")
    size = p.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{what} checkpoint {p} is empty (0 bytes): the download was "
                             "probably interrupted; fetch it again")
    mmap = zipfile.is_zipfile(p)
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError,
            zipfile.BadZipFile, KeyError, AttributeError, TypeError) as e:
        raise ModelLoadError(
            f"{what} checkpoint {p} ({size:,} bytes) cannot be read as a torch file: it is "
            f"truncated or corrupt ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "Fetch it again and check its SHA-256 (`lipsync weights check`)."
        ) from e


def describe(obj: Any) -> str:
    """A short description of what a loaded checkpoint holds, for error messages."""
    if isinstance(obj, Mapping):
        keys = list(obj.keys())
        tensors = [k for k in keys if isinstance(obj[k], torch.Tensor)]
        if tensors and len(tensors) == len(keys):
            return f"a bare state_dict of {len(keys)} tensors, starting {_fmt(keys)}"
        guess = guess_model(obj)
        head = f"a dict with keys {_fmt(keys, 8)}"
        return f"{head}{' (looks like ' + guess + ')' if guess else ''}"
    return f"a {type(obj).__name__}, not a dict"


def guess_model(obj: Mapping[str, Any]) -> str:
    """Name the model family a checkpoint dict most likely belongs to, or ''."""
    sd = None
    for k in ("state_dict", "model", "model_state"):
        if isinstance(obj.get(k), Mapping):
            sd = obj[k]
            break
    names = " ".join(list(sd.keys())[:2000]) if sd is not None else ""
    if "face_encoder_blocks" in names or "audio_encoder" in names:
        return "a Wav2Lip checkpoint"
    if "enc_p." in names and "dec." in names:
        return "a FreeVC checkpoint"
    if "cfg" in obj and ("feature_extractor" in names or "encoder.layers" in names):
        return "a WavLM (unilm) checkpoint"
    if "lstm.weight_ih_l0" in names and "similarity_weight" in names:
        return "a speaker-encoder (GE2E) checkpoint"
    return ""


def pick_state_dict(obj: Any, keys: Iterable[str], path: str | os.PathLike[str],
                    what: str) -> OrderedDict[str, torch.Tensor]:
    """Return the state_dict stored under the first of ``keys`` in a checkpoint dict."""
    if isinstance(obj, Mapping):
        for k in keys:
            sd = obj.get(k)
            if isinstance(sd, Mapping):
                return OrderedDict(sd)
    raise ModelLoadError(f"{path} is not a {what} checkpoint: expected a dict with "
                         f"{' or '.join(repr(k) for k in keys)}, found {describe(obj)}")


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> OrderedDict[str, torch.Tensor]:
    """Drop ``prefix`` (e.g. DataParallel's ``module.``) from every key that has it."""
    n = len(prefix)
    if sd and all(k.startswith(prefix) for k in sd):
        return OrderedDict((k[n:], v) for k, v in sd.items())
    return OrderedDict(sd)


def fold_weight_norm(sd: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Replace every weight-norm pair by the effective weight ``g * v / ||v||``.

    Handles the legacy names (``X.weight_g``/``X.weight_v``) and the parametrization names
    (``X.parametrizations.weight.original0``/``original1``). The norm runs over every
    dimension where ``g`` has size 1, so ``dim=0`` convolutions, ConvTranspose (dim 0 is the
    input channel) and WavLM's ``dim=2`` positional conv all fold the same way. The norm and the
    scale are computed in float64 and applied with one float32 multiply (at most 1 ulp off,
    without float64 copies of every weight).
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    pairs = {".weight_g": ".weight_v",
             ".parametrizations.weight.original0": ".parametrizations.weight.original1"}
    for k, v in sd.items():
        for g_suffix, v_suffix in pairs.items():
            if k.endswith(g_suffix) and k[: -len(g_suffix)] + v_suffix in sd:
                base = k[: -len(g_suffix)]
                d = sd[base + v_suffix]
                dims = [i for i in range(d.dim()) if v.shape[i] == 1]
                norm = torch.linalg.vector_norm(d, dim=dims, keepdim=True, dtype=torch.float64)
                out[base + ".weight"] = d * (v.double() / norm).to(d.dtype)
                break
            if k.endswith(v_suffix) and k[: -len(v_suffix)] + g_suffix in sd:
                break
        else:
            out[k] = v
    return out


def check_state_dict(sd: Mapping[str, torch.Tensor], model: torch.nn.Module,
                     path: str | os.PathLike[str], what: str) -> None:
    """Raise :class:`ModelLoadError` unless ``sd`` has exactly the model's keys and shapes.

    The model may live on the meta device: only names and shapes are compared.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or wrong):
        return
    parts = [f"{path} does not match the {what} architecture"]
    if missing:
        parts.append(f"{len(missing)} missing keys: {_fmt(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_fmt(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} wrong shapes: {'; '.join(wrong[:_SHOW])}"
                     + (" ..." if len(wrong) > _SHOW else ""))
    keys = list(sd.keys())
    parts.append(f"the file holds {len(keys)} tensors starting {_fmt(keys, 3)}")
    guess = guess_model({"model": sd})
    if guess:
        parts.append(f"it looks like {guess}")
    raise ModelLoadError("; ".join(parts))


def load_into(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], device: str | torch.device,
              dtype: torch.dtype) -> torch.nn.Module:
    """Move the checked weights into a meta-device ``model`` without a second copy.

    ``assign=True`` makes the parameters *be* the loaded tensors (memory-mapped for zip
    files) instead of copying them into freshly allocated ones.
    """
    model.load_state_dict(sd, strict=True, assign=True)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers())
                if t.is_meta]
    if leftover:  # a non-persistent buffer the model forgot to materialise: our bug
        raise RuntimeError(f"{type(model).__name__} still has meta tensors after loading: {leftover[:3]}")
    return to_device(model, device, dtype)


def to_device(model: torch.nn.Module, device: str | torch.device,
              dtype: torch.dtype) -> torch.nn.Module:
    """Move floating-point tensors to ``device``/``dtype``; return the model in eval mode."""
    model.to(device=device)
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point() and t.dtype != dtype:
            t.data = t.data.to(dtype)
    return model.eval().requires_grad_(False)



def _fmt(keys: list[str], n: int = _SHOW) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f", ... (+{len(keys) - n})" if len(keys) > n else "")
