"""``make demo``: the main job, offline, on generated weights.

Until the lip-sync engine lands this loads the full model bundle (Wav2Lip, WavLM-Large,
FreeVC, speaker encoder) onto the chosen device, warms each model up and prints the
per-model table. Generated weights are written once into ``<work_dir>/weights``.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from .bundle import load_bundle, timing_table
from .settings import model_dtype, resolve_device
from .weights.formula import NOT_TRAINED_BANNER, write_test_checkpoint

log = logging.getLogger(__name__)

_DEMO_WEIGHTS = (("wav2lip", "wav2lip_gan.pth"), ("freevc", "freevc.pth"), ("wavlm", "WavLM-Large.pt"))


def ensure_demo_weights(weights_dir: Path) -> Path:
    """Write the generated checkpoints the demo needs, unless already there."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    for kind, name in _DEMO_WEIGHTS:
        path = weights_dir / name
        if not path.is_file():
            log.info("generating %s (architecture-exact, NOT trained)", path)
            write_test_checkpoint(kind, path)
    return weights_dir


def run_demo(work_dir: Path, device: str = "auto") -> int:
    dev = resolve_device(device)
    weights = ensure_demo_weights(work_dir / "weights")
    print(NOT_TRAINED_BANNER, file=sys.stderr)
    bundle = load_bundle(weights, dev, model_dtype(dev, half_precision=True))
    print(f"\nModel bundle on {dev} (generated weights from {weights}):")
    print(timing_table(bundle))
    return 0
