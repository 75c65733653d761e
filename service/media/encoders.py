"""Which H.264 encoder to use, and its options.

``h264_nvenc`` is compiled into PyAV's FFmpeg but only opens on a GPU with an NVENC engine
(L4, A10, RTX; not H100/A100, and not a CPU machine): it is tried once per process, on a tiny
frame, and the answer is cached. Otherwise libx264.
"""
from __future__ import annotations

import logging
from fractions import Fraction
from functools import lru_cache
from typing import cast

import av
from av.video.codeccontext import VideoCodecContext

log = logging.getLogger(__name__)

NVENC = "h264_nvenc"
X264 = "libx264"
CODECS = ("auto", NVENC, X264)

# x264 preset names -> NVENC's p1 (fastest) .. p7 (best); NVENC rejects x264's names
_NVENC_PRESET = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3", "fast": "p4",
                 "medium": "p4", "slow": "p5", "slower": "p6", "veryslow": "p7", "placebo": "p7"}
X264_PRESETS = tuple(_NVENC_PRESET)


@lru_cache(maxsize=1)
def nvenc_available() -> bool:
    """True when ``h264_nvenc`` actually opens (a driver and an NVENC engine are present)."""
    try:
        ctx = cast(VideoCodecContext, av.CodecContext.create(NVENC, "w"))
        ctx.width, ctx.height = 256, 144  # above NVENC's minimum frame size
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.open()
    except (av.FFmpegError, OSError, ValueError) as e:  # no codec, driver or engine: "not here"
        # worth saying only where a GPU could have encoded: on a CPU-only machine it is the norm
        (log.info if _gpu_visible() else log.debug)("NVENC not usable (%s); encoding with %s",
                                                    " ".join(str(e).split()), X264)
        return False
    log.info("NVENC available; encoding with %s", NVENC)
    return True


def choose_encoder(codec: str) -> str:
    """``auto`` -> NVENC when it opens, else libx264; an explicit name is returned as given."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
    if codec == "auto":
        return NVENC if nvenc_available() else X264
    return codec


def encoder_options(encoder: str, preset: str, crf: int) -> dict[str, str]:
    """Private options for the encoder: x264 preset/CRF, or the NVENC equivalents.

    NVENC has no CRF; constant quality (``rc=vbr``, ``cq``) is its closest mode. That mapping
    has not been measured on an NVENC GPU.
    """
    if preset not in _NVENC_PRESET:
        raise ValueError(f"preset must be one of {X264_PRESETS}, got {preset!r}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be in 0..51, got {crf}")
    if encoder == NVENC:
        # cq 0 means "encoder decides" to NVENC, not lossless: keep it at least 1
        return {"preset": _NVENC_PRESET[preset], "rc": "vbr", "cq": str(max(crf, 1)), "b": "0"}
    return {"preset": preset, "crf": str(crf)}


def _gpu_visible() -> bool:
    import torch

    return bool(torch.cuda.is_available())
