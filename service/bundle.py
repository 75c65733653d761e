"""The model bundle: every model a pipeline needs, loaded once onto one device and warmed up.

The service keeps one bundle per process (preloaded at start-up); the baseline pipeline
builds a fresh one per request, as the customer's original scripts did. Load and warm-up
seconds are recorded per model so start-up cost is visible (``lipsync demo``, ``/health``).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import ModelsUnavailableError
from .weights.catalog import FREEVC_FILE, SPEAKER_FILE, WAV2LIP_FILE, WAVLM_FILE

log = logging.getLogger(__name__)


class WeightsMissingError(ModelsUnavailableError):
    """One or more required checkpoint files are not in the weights folder (503
    ``models_unavailable`` for a request; exit 1 for a command)."""


@dataclass(frozen=True)
class ModelTiming:
    name: str
    file: str
    parameters: int
    load_s: float
    warmup_s: float


@dataclass
class ModelBundle:
    """Loaded, warmed models on one device. Attributes are eval-mode ``nn.Module``s."""

    device: torch.device
    dtype: torch.dtype
    freevc_config: str
    wav2lip: Any = None
    freevc: Any = None
    wavlm: Any = None
    speaker: Any = None
    timings: list[ModelTiming] = field(default_factory=list)

    @property
    def loaded(self) -> list[str]:
        return [t.name for t in self.timings]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _warm_wav2lip(m: Any, dev: torch.device, dt: torch.dtype) -> None:
    m(torch.zeros(4, 1, 80, 16, device=dev, dtype=dt), torch.rand(4, 6, 96, 96, device=dev, dtype=dt))


def _warm_wavlm(m: Any, dev: torch.device, dt: torch.dtype) -> None:
    m.extract(0.01 * torch.randn(1, 16000, device=dev, dtype=dt))


def _warm_freevc(m: Any, dev: torch.device, dt: torch.dtype, config: str) -> None:
    c = torch.randn(1, 1024, 50, device=dev, dtype=dt)
    if config == "freevc-s":
        m.infer(c, mel=torch.randn(1, 80, 50, device=dev, dtype=dt), noise_scale=0.0)
    else:
        g = torch.nn.functional.normalize(torch.rand(1, 256, device=dev, dtype=dt), dim=1)
        m.infer(c, g=g, noise_scale=0.0)


def _warm_speaker(m: Any, dev: torch.device, dt: torch.dtype) -> None:
    m.embed_utterance(0.01 * torch.randn(32000).numpy())


def pack_for_cpu(model: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """``model.pack()`` (prepacked oneDNN kernels) on a CPU whose torch build runs them for
    ``dtype``; the model unchanged anywhere else."""
    from models import onednn

    if device.type != "cpu" or not onednn.available(dtype):
        return model
    log.debug("%s: prepacked oneDNN kernels (%s)", type(model).__name__, dtype)
    return model.pack()


def load_bundle(weights_dir: Path, device: torch.device, dtype: torch.dtype = torch.float32,
                freevc_config: str = "freevc", warm: bool = True,
                only: tuple[str, ...] = ("wav2lip", "wavlm", "freevc", "speaker"),
                wav2lip_dtype: torch.dtype | None = None, pack: bool = False) -> ModelBundle:
    """Load (and by default warm up) the models named in ``only`` from ``weights_dir``.

    ``wav2lip_dtype`` overrides ``dtype`` for Wav2Lip alone (e.g. bf16 on a CPU with native
    bf16 while the voice models stay fp32). ``pack``: on a CPU, the models with a ``pack()``
    (Wav2Lip and WavLM) get their prepacked oneDNN kernels (:mod:`models.onednn`) before the
    warm-up; ignored elsewhere or where this torch build lacks them.

    Raises :class:`WeightsMissingError` naming every missing file before loading anything,
    and :class:`models.ModelLoadError` for a file that is present but wrong.
    """
    from models.freevc import load_freevc
    from models.speaker_encoder import load_speaker_encoder
    from models.wav2lip import load_wav2lip
    from models.wavlm import load_wavlm

    d = Path(weights_dir)
    wanted = {"wav2lip": d / WAV2LIP_FILE, "wavlm": d / WAVLM_FILE,
              "freevc": d / FREEVC_FILE[freevc_config]}
    missing = [str(p) for name, p in wanted.items() if name in only and not p.is_file()]
    if missing:
        raise WeightsMissingError(
            f"missing model weights: {', '.join(missing)}. Download the official files with "
            f"`lipsync weights fetch --out {d}`, or write generated test weights (not trained) "
            f"with `lipsync weights make-test --out {d}`.")
    speaker_path = d / SPEAKER_FILE
    speaker_file = speaker_path if speaker_path.is_file() else None

    w2l_dtype = wav2lip_dtype or dtype
    spk_dtype = torch.float32  # a 1.4 M-parameter LSTM: half precision buys nothing
    steps: list[tuple[str, Path | None, Callable[[], Any], Callable[[Any], None]]] = [
        ("wav2lip", wanted["wav2lip"], lambda: load_wav2lip(wanted["wav2lip"], device, w2l_dtype),
         lambda m: _warm_wav2lip(m, device, w2l_dtype)),
        ("wavlm", wanted["wavlm"], lambda: load_wavlm(wanted["wavlm"], device, dtype),
         lambda m: _warm_wavlm(m, device, dtype)),
        ("freevc", wanted["freevc"], lambda: load_freevc(wanted["freevc"], freevc_config, device, dtype),
         lambda m: _warm_freevc(m, device, dtype, freevc_config)),
        ("speaker", speaker_file, lambda: load_speaker_encoder(speaker_file, device, spk_dtype),
         lambda m: _warm_speaker(m, device, spk_dtype)),
    ]
    bundle = ModelBundle(device=device, dtype=dtype, freevc_config=freevc_config)
    for name, path, load, warmup in steps:
        if name not in only:
            continue
        t0 = time.perf_counter()
        model = load()
        params = sum(p.numel() for p in model.parameters())  # before packing hides the weights
        if pack and hasattr(model, "pack"):  # Wav2Lip and WavLM (FreeVC stays eager: models/onednn.py)
            model = pack_for_cpu(model, device, w2l_dtype if name == "wav2lip" else dtype)
        _sync(device)
        t1 = time.perf_counter()
        if warm:
            with torch.inference_mode():
                warmup(model)
            _sync(device)
        t2 = time.perf_counter()
        setattr(bundle, name, model)
        file = str(path) if path else "resemblyzer/pretrained.pt (packaged)"
        bundle.timings.append(ModelTiming(name, file, params, t1 - t0, t2 - t1 if warm else 0.0))
        log.info("loaded %s from %s in %.2f s (warm-up %.2f s)", name, file, t1 - t0, t2 - t1)
    return bundle


def timing_table(bundle: ModelBundle) -> str:
    rows = [f"{'model':<9} {'parameters':>12} {'load s':>8} {'warm-up s':>10}  file"]
    for t in bundle.timings:
        rows.append(f"{t.name:<9} {t.parameters:>12,} {t.load_s:>8.2f} {t.warmup_s:>10.2f}  {t.file}")
    rows.append(f"{'total':<9} {sum(t.parameters for t in bundle.timings):>12,} "
                f"{sum(t.load_s for t in bundle.timings):>8.2f} "
                f"{sum(t.warmup_s for t in bundle.timings):>10.2f}  device {bundle.device}, {bundle.dtype}")
    return "\n".join(rows)
