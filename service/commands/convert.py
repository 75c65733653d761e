"""``lipsync convert``: speech in, the same speech in another speaker's voice out (FreeVC).

    lipsync convert --source SPEECH --target MEDIA --out OUT.wav [--config freevc|freevc-s|freevc-24]
                    [--device auto|cpu|cuda] [--noise-scale X] [--seed N]

The target may be any audio file or a video: its (first) audio track is the speaker reference.
Writes mono PCM16 WAV (16 kHz unless ``--output-rate``), atomically.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInputError
from ..precision import PRECISIONS, log_choice, resolve_precision
from ..settings import Settings, resolve_device
from .args import add_weights_dir
from .exit_codes import run_reported

log = logging.getLogger(__name__)

CONFIGS = ("freevc", "freevc-s", "freevc-24")


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    from ..voice import CHUNK_S, MAX_SOURCE_S, NOISE_SCALE, OVERLAP_S

    p.add_argument("--source", required=True, help="speech to convert: any audio or video file with sound")
    p.add_argument("--target", required=True,
                   help="the target speaker: an audio file, or a video whose audio track is used")
    p.add_argument("--out", required=True, help="output .wav (mono PCM16, written atomically)")
    p.add_argument("--config", default=None, choices=CONFIGS, help="FreeVC model (default $FREEVC_CONFIG or freevc)")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="default $DEVICE or auto")
    p.add_argument("--precision", default=None, choices=list(PRECISIONS),
                   help="WavLM and FreeVC precision (default $VOICE_PRECISION or auto: fp16 on a GPU, bf16 on "
                        "a CPU with native bf16, else fp32; fp32 is the faithful one)")
    add_weights_dir(p)
    p.add_argument("--noise-scale", type=float, default=NOISE_SCALE,
                   help=f"prior noise scale (default {NOISE_SCALE:g}, the official; 0 = deterministic)")
    p.add_argument("--seed", type=int, default=None, help="seed the noise: the same inputs give the same output")
    p.add_argument("--chunk-s", type=float, default=CHUNK_S, help="longer sources go in chunks of this length")
    p.add_argument("--overlap-s", type=float, default=OVERLAP_S, help="overlap of neighbouring chunks (crossfaded)")
    p.add_argument("--max-source-s", type=float, default=MAX_SOURCE_S, help="refuse longer sources")
    p.add_argument("--output-rate", type=int, default=16000, choices=[16000, 24000],
                   help="rate of the written wav (16000 for lip-sync; 24000 keeps freevc-24's own rate)")


@dataclass
class ConvertResult:
    out_path: Path
    duration_s: float
    sample_rate: int
    seconds: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0


def run_convert(args: argparse.Namespace, settings: Settings) -> int:
    """Exit codes: 0 done, 2 bad input (unreadable/silent/short media, bad option), 1 anything else."""
    def report(result: ConvertResult) -> None:
        from ..timing import format_table

        print(format_table(result.seconds, result.total_s, "lipsync convert: per-step seconds"), file=sys.stderr)
        print(getattr(args, "precision_line", ""), file=sys.stderr)
        print(f"{result.duration_s:.2f} s of converted speech at {result.sample_rate} Hz -> {result.out_path}")

    return run_reported("lipsync convert", lambda: convert_from_args(args, settings), report)


def _check_out(path: Path) -> None:
    if path.is_dir():
        raise BadInputError(f"--out {path} is a folder; give a file name ending in .wav")
    if not path.parent.is_dir():
        raise BadInputError(f"--out {path}: folder {path.parent} does not exist; create it first")


def convert_from_args(args: argparse.Namespace, settings: Settings) -> ConvertResult:
    """Run ``lipsync convert`` for parsed ``args``; raises instead of printing.

    Steps (each timed): read source, read target, load models, speaker embedding, wavlm,
    synthesizer, resample (freevc-24 only), write.
    """
    from ..bundle import load_bundle
    from ..media import read_audio
    from ..timing import StageTimer
    from ..tts.wavfile import write_wav
    from ..voice import VoiceConverter

    out = Path(args.out)
    _check_out(out)
    config = args.config or settings.freevc_config
    device = resolve_device(args.device or settings.device)
    timer = StageTimer(sync_cuda=device.type == "cuda")
    t0 = time.perf_counter()
    with timer.stage("read source"):
        source = read_audio(args.source, sample_rate=16000)
    with timer.stage("read target"):
        target = read_audio(args.target, sample_rate=16000)
    # freevc-s computes g with its own mel LSTM: the resemblyzer encoder is not needed
    only = ("wavlm", "freevc") if config == "freevc-s" else ("wavlm", "freevc", "speaker")
    precision = args.precision or settings.voice_precision
    dtype = resolve_precision(precision, device, settings.half_precision)
    args.precision_line = log_choice(device, settings.half_precision, voice=(precision, dtype),
                                     level=logging.DEBUG)
    with timer.stage("load models"):
        # no warm-up: a one-shot command would pay for it and gain nothing
        bundle = load_bundle(settings.weights_dir, device, dtype,
                             freevc_config=config, warm=False, only=only, pack=settings.pack_weights)
    converter = VoiceConverter(bundle, noise_scale=args.noise_scale, seed=args.seed, chunk_s=args.chunk_s,
                               overlap_s=args.overlap_s, max_source_s=args.max_source_s,
                               output_rate=args.output_rate)
    audio = converter.convert_voice(source, target, timer=timer)
    with timer.stage("write"):
        write_wav(out, audio)
    total = time.perf_counter() - t0
    log.info("converted %s (%.2f s) into the voice of %s -> %s", args.source, source.duration_s, args.target, out)
    return ConvertResult(out, audio.duration_s, audio.sample_rate, timer.seconds(), total)
