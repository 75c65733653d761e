"""The weight files the product expects in ``WEIGHTS_DIR``, and where the public copies are.

URLs point to public mirrors of the official releases (the originals sit behind Google
Drive / SharePoint links that do not allow scripted downloads). A SHA-256 is listed only
where a public source states it; files without one are checked for layout instead.
"""
from __future__ import annotations

from dataclasses import dataclass


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


# the official file names, the one place they are spelled (WEIGHTS_DIR holds them)
WAV2LIP_FILE = "wav2lip_gan.pth"
WAVLM_FILE = "WavLM-Large.pt"
FREEVC_FILE = {"freevc": "freevc.pth", "freevc-s": "freevc-s.pth", "freevc-24": "freevc-24.pth"}
SPEAKER_FILE = "pretrained_bak_5805000.pt"
S3FD_FILE = "s3fd-619a316812.pth"

_FREEVC_SPACE = "https://huggingface.co/spaces/OlaWod/FreeVC/resolve/main"

CATALOG: tuple[WeightFile, ...] = (
    # hash and size pinned by several independent download scripts and the HF LFS etag; the
    # official Google Drive link now serves a different (TorchScript) file, so it is not used
    WeightFile(WAV2LIP_FILE, "wav2lip", "Wav2Lip generator, GAN-trained (Rudrabha/Wav2Lip)",
               ("https://huggingface.co/camenduru/Wav2Lip/resolve/main/checkpoints/wav2lip_gan.pth",
                "https://huggingface.co/numz/wav2lip_studio/resolve/main/Wav2lip/wav2lip_gan.pth",
                "https://huggingface.co/Nekochu/Wav2Lip/resolve/main/wav2lip_gan.pth"),
               sha256="ca9ab7b7b812c0e80a6e70a5977c545a1e8a365a6c49d5e533023c034d7ac3d8",
               size=435_801_865),
    # no public source states hashes for the FreeVC generators: checked by layout only
    WeightFile(FREEVC_FILE["freevc"], "freevc", "FreeVC synthesizer, 16 kHz (OlaWod/FreeVC)",
               (f"{_FREEVC_SPACE}/checkpoints/freevc.pth",
                "https://storage.openvinotoolkit.org/repositories/openvino_notebooks/models/freevc/freevc.pth")),
    WeightFile(FREEVC_FILE["freevc-s"], "freevc-s", "FreeVC-s synthesizer, mel speaker path (OlaWod/FreeVC)",
               (f"{_FREEVC_SPACE}/checkpoints/freevc-s.pth",), required=False),
    WeightFile(FREEVC_FILE["freevc-24"], "freevc-24", "FreeVC synthesizer, 24 kHz output (OlaWod/FreeVC)",
               (f"{_FREEVC_SPACE}/checkpoints/freevc-24.pth",
                "https://huggingface.co/spaces/kevinwang676/FreeVC/resolve/main/checkpoints/freevc-24.pth"),
               required=False),
    WeightFile(WAVLM_FILE, "wavlm", "WavLM-Large content encoder (microsoft/unilm)",
               ("https://github.com/bshall/knn-vc/releases/download/v0.1/WavLM-Large.pt",
                "https://huggingface.co/s3prl/converted_ckpts/resolve/main/wavlm_large.pt"),
               sha256="6fb4b3c3e6aa567f0a997b30855859cb81528ee8078802af439f7b2da0bf100f",
               size=1_261_965_425),
    # two differing copies circulate under this name, so only the size is pinned
    WeightFile(SPEAKER_FILE, "speaker",
               "FreeVC's speaker encoder (optional: resemblyzer's packaged weights are the default)",
               (f"{_FREEVC_SPACE}/speaker_encoder/ckpt/pretrained_bak_5805000.pt",
                "https://github.com/OlaWod/FreeVC/raw/main/speaker_encoder/ckpt/pretrained_bak_5805000.pt"),
               size=17_090_379, required=False),
    # face-alignment's S3FD detector; the name carries the first 10 hex digits of its SHA-256.
    # `weights fetch` gets it with the rest and `--detector auto` uses it when present; not
    # required, because OpenCV's cascade detects without any file
    WeightFile(S3FD_FILE, "s3fd", "S3FD face detector (face-alignment): --detector auto uses it",
               ("https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
                "https://huggingface.co/camenduru/Wav2Lip/resolve/main/checkpoints/s3fd-619a316812.pth"),
               sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
               size=89_843_225, required=False),
)

BY_NAME = {w.name: w for w in CATALOG}

