"""The weight files the product expects in ``WEIGHTS_DIR``, and where the public copies are.

URLs point to public mirrors of the official releases (the originals sit behind Google
Drive / SharePoint links that do not allow scripted downloads). A SHA-256 is listed only
where a public source states it; files without one are checked for layout instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightFile:
    name: str
    """File name inside ``WEIGHTS_DIR`` (the official one)."""
    kind: str
    """Which loader reads it: wav2lip, freevc, freevc-s, freevc-24, wavlm, speaker, s3fd."""
    description: str
    urls: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None
    required: bool = True


CATALOG: tuple[WeightFile, ...] = (
    WeightFile("wav2lip_gan.pth", "wav2lip", "Wav2Lip generator, GAN-trained (Rudrabha/Wav2Lip)",
               ("https://huggingface.co/numz/wav2lip_studio/resolve/main/Wav2lip/wav2lip_gan.pth",)),
    WeightFile("freevc.pth", "freevc", "FreeVC synthesizer, 16 kHz (OlaWod/FreeVC)",
               ("https://huggingface.co/spaces/OlaWod/FreeVC/resolve/main/checkpoints/freevc.pth",)),
    WeightFile("freevc-s.pth", "freevc-s", "FreeVC-s synthesizer, mel speaker path (OlaWod/FreeVC)",
               ("https://huggingface.co/spaces/OlaWod/FreeVC/resolve/main/checkpoints/freevc-s.pth",),
               required=False),
    WeightFile("freevc-24.pth", "freevc-24", "FreeVC synthesizer, 24 kHz output (OlaWod/FreeVC)",
               ("https://huggingface.co/spaces/OlaWod/FreeVC/resolve/main/checkpoints/freevc-24.pth",),
               required=False),
    WeightFile("WavLM-Large.pt", "wavlm", "WavLM-Large content encoder (microsoft/unilm)",
               ("https://huggingface.co/spaces/OlaWod/FreeVC/resolve/main/wavlm/WavLM-Large.pt",)),
    WeightFile("pretrained_bak_5805000.pt", "speaker",
               "FreeVC's speaker encoder (optional: resemblyzer's packaged weights are the default)",
               ("https://huggingface.co/spaces/OlaWod/FreeVC/resolve/main/speaker_encoder/ckpt/"
                "pretrained_bak_5805000.pt",), required=False),
)

BY_NAME = {w.name: w for w in CATALOG}
FREEVC_FILE = {"freevc": "freevc.pth", "freevc-s": "freevc-s.pth", "freevc-24": "freevc-24.pth"}
SPEAKER_FILE = "pretrained_bak_5805000.pt"


def weight_path(weights_dir: Path, name: str) -> Path:
    return Path(weights_dir) / BY_NAME[name].name
