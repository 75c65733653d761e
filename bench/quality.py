"""How far a faster format moves the output: the measures of the precision quality gate.

    .venv/bin/python -m bench.quality [--weights DIR] [--json OUT]

Measured on the reference media (``tests/data/face_dev.mp4``, ``speech_dev.wav``, the reference
box) with the checkpoints in ``--weights`` (default: the demo's full-size generated ones):
Wav2Lip's composited frames (lossless, before the encoder) in fp32 against bf16/fp16, PSNR in
the mouth region and the frame alignment; the converted speech of fp32 against bf16 with the
same noise seed, next to two fp32 runs with different seeds (FreeVC samples its prior), and the
speaker-embedding cosine. The faster formats run as the service runs them (prepacked oneDNN
kernels on a CPU, ``PACK_WEIGHTS``); fp32 is the eager, faithful reference.
``tests/test_precision.py`` asserts the gate with the same functions.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
BOX = (135, 295, 327, 477)  # ../shared/reference/media/face_dev_box.json: top, bottom, left, right


def mouth_rows(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    """The mouth region: the lower half of the face box (where the lips move)."""
    top, bottom, left, right = box
    return slice(top + (bottom - top) // 2, bottom), slice(left, right)


def psnr_per_frame(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """PSNR in dB of each frame pair of two [N, ...] uint8 stacks (inf-free: identical = 100 dB)."""
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = err.reshape(len(a), -1).mean(axis=1)
    return np.where(mse > 0, 10 * np.log10(peak ** 2 / np.maximum(mse, 1e-12)), 100.0)


def alignment_offset(reference: np.ndarray, candidate: np.ndarray, reach: int = 2) -> tuple[int, float]:
    """The frame shift k (|k| <= reach) at which ``candidate[i]`` best matches ``reference[i + k]``
    (pooled MSE), and how many dB the best other shift is worse."""
    n = len(reference)
    db = {}
    for k in range(-reach, reach + 1):
        i = np.arange(max(0, -k), min(n, n - k))
        mse = ((candidate[i].astype(np.float64) - reference[i + k].astype(np.float64)) ** 2).mean()
        db[k] = 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))
    best = max(db, key=db.__getitem__)
    return best, db[best] - max(v for k, v in db.items() if k != best)


def relative_deviation(reference: np.ndarray, other: np.ndarray) -> float:
    """mean |other - reference| / mean |reference|."""
    ref = reference.astype(np.float64)
    return float(np.abs(other.astype(np.float64) - ref).mean() / np.abs(ref).mean())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def lipsync_figures(weights: Path, formats: tuple[str, ...], device: str = "cpu") -> dict[str, dict[str, float]]:
    import torch

    from models.wav2lip import load_wav2lip
    from service.bundle import pack_for_cpu
    from service.lipsync.engine import BoxPlan, SyncOptions, composite_frames
    from service.media import read_audio
    from service.precision import DTYPES
    from service.types import FaceBox

    speech = read_audio(DATA / "speech_dev.wav", 16000)
    frames = {}
    for name in ("fp32", *formats):
        model = load_wav2lip(weights / "wav2lip_gan.pth", device, dtype=DTYPES[name])
        if name != "fp32":  # as the service runs it (PACK_WEIGHTS); the reference stays eager fp32
            model = pack_for_cpu(model, torch.device(device), DTYPES[name])
        with torch.inference_mode():
            frames[name] = np.stack(list(composite_frames(
                DATA / "face_dev.mp4", speech, model, SyncOptions(box=BOX, batch_size=16),
                lambda *a: BoxPlan([FaceBox(*BOX)]))))
    rows, cols = mouth_rows(BOX)
    out = {}
    for name in formats:
        db = psnr_per_frame(frames["fp32"][:, rows, cols], frames[name][:, rows, cols])
        offset, margin = alignment_offset(frames["fp32"][:, rows, cols], frames[name][:, rows, cols])
        diff = np.abs(frames["fp32"][:, rows, cols].astype(int) - frames[name][:, rows, cols].astype(int))
        out[name] = {"frames": len(db), "mouth_psnr_db_min": float(db.min()),
                     "mouth_psnr_db_median": float(np.median(db)), "max_level_diff": int(diff.max()),
                     "alignment_offset": offset, "alignment_margin_db": margin}
    return out


def voice_figures(weights: Path, formats: tuple[str, ...], device: str = "cpu") -> dict[str, dict[str, float]]:
    import torch

    from service.bundle import load_bundle
    from service.media import read_audio
    from service.precision import DTYPES
    from service.voice import VoiceConverter

    speech = read_audio(DATA / "speech_dev.wav", 16000)
    only = ("wavlm", "freevc", "speaker")
    fp32 = load_bundle(weights, torch.device(device), torch.float32, warm=False, only=only)
    ref = VoiceConverter(fp32, seed=1).convert_voice(speech, speech).samples
    other_seed = VoiceConverter(fp32, seed=2).convert_voice(speech, speech).samples
    embed = fp32.speaker.embed_utterance
    ref_embedding = embed(ref)
    out = {"fp32 other seed": {"relative_deviation": relative_deviation(ref, other_seed),
                               "speaker_cosine": cosine(ref_embedding, embed(other_seed))}}
    for name in formats:
        bundle = load_bundle(weights, torch.device(device), DTYPES[name], warm=False, only=only, pack=True)
        y = VoiceConverter(bundle, seed=1).convert_voice(speech, speech).samples
        out[name] = {"relative_deviation": relative_deviation(ref, y), "max_abs_diff": float(np.abs(y - ref).max()),
                     "speaker_cosine": cosine(ref_embedding, embed(y))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.quality", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=ROOT / ".demo" / "weights")
    ap.add_argument("--formats", nargs="+", default=["bf16"], choices=["bf16", "fp16"],
                    help="compared with fp32 (fp16 is the CUDA default: use it with --device cuda)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="fp32 and the formats both run here")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from bench._machine import describe_machine
    from service.dev.demo import ensure_demo_weights

    weights = ensure_demo_weights(args.weights)
    formats = tuple(args.formats)
    result = {"machine": describe_machine(), "weights": str(weights),
              "device": args.device,
              "lipsync": lipsync_figures(weights, formats, args.device),
              "voice": voice_figures(weights, formats, args.device)}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
