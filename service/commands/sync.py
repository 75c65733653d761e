"""``lipsync sync``: a face video or image plus speech in, a lip-synced mp4 out."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BadInputError
from ..media.writer import DEFAULT_PRESET
from ..precision import PRECISIONS, log_choice, resolve_precision
from ..settings import Settings, resolve_device
from .args import add_weights_dir
from .exit_codes import run_reported

if TYPE_CHECKING:
    from ..lipsync.engine import SyncResult

log = logging.getLogger(__name__)



def add_sync_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--face", required=True, help="face video (any format ffmpeg reads) or image (.jpg/.png)")
    p.add_argument("--audio", required=True, help="speech: any audio or video file with an audio track")
    p.add_argument("--out", required=True, help="output .mp4 (written atomically)")
    p.add_argument("--box", type=int, nargs=4, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="face box for every frame: skips detection (as the official --box)")
    p.add_argument("--wav2lip", default=None, help="checkpoint (default <weights dir>/wav2lip_gan.pth)")
    add_weights_dir(p)
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="default $DEVICE or auto")
    p.add_argument("--detector", default="auto", choices=["auto", "opencv", "s3fd"],
                   help="auto: s3fd when its weights are in $WEIGHTS_DIR, else opencv")
    p.add_argument("--strategy", default="static", choices=["per-frame", "static", "keyframe"],
                   help="static: detect once and reuse (default); per-frame: official; keyframe: every N")
    p.add_argument("--keyframe-interval", type=int, default=10, metavar="N",
                   help="keyframe strategy: detect every N frames, interpolate between (default 10)")
    p.add_argument("--resize-factor", type=int, default=1, metavar="N",
                   help="downscale frames by N first, as the official --resize_factor; the output has "
                        "that size (default 1: the input's size)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="Wav2Lip batch (default 16 on CPU, 128 on GPU; official 128)")
    p.add_argument("--pads", type=int, nargs=4, default=[0, 10, 0, 0], metavar=("T", "B", "L", "R"),
                   help="padding added to detected boxes (official default 0 10 0 0)")
    p.add_argument("--nosmooth", action="store_true", help="no 5-frame box smoothing (per-frame)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate for an image input")
    p.add_argument("--loop-mode", default="loop", choices=["loop", "pingpong"],
                   help="how a video shorter than the audio is extended")
    p.add_argument("--paste-round", action="store_true", help="round instead of truncating (not official)")
    p.add_argument("--blend", type=float, default=0.0, help="feather the pasted box edges (0 = official)")
    p.add_argument("--max-pixels", type=int, default=3840 * 2160, help="refuse larger frames")
    p.add_argument("--codec", default="auto", choices=["auto", "libx264", "h264_nvenc"],
                   help="H.264 encoder (auto: NVENC when a GPU has it, else libx264)")
    p.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"x264 preset (ultrafast … veryslow; default {DEFAULT_PRESET})")
    p.add_argument("--crf", type=int, default=20, help="x264 quality: lower is better and bigger (default 20)")
    p.add_argument("--precision", default=None, choices=list(PRECISIONS),
                   help="Wav2Lip precision (default $LIPSYNC_PRECISION or auto: fp16 on a GPU, bf16 on a CPU "
                        "with native bf16 (AVX512-BF16/AMX), else fp32; fp32 is the faithful one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_sync(args: argparse.Namespace, settings: Settings) -> int:
    """Exit codes: 0 done, 2 bad input (including no face), 1 anything else."""
    def report(result: SyncResult) -> None:
        from ..timing import format_table

        print(format_table(result.seconds, result.total_s, "lipsync sync: per-stage seconds"), file=sys.stderr)
        if result.face_detection is not None:
            print(f"face: {result.face_detection.summary()}", file=sys.stderr)
        print(getattr(args, "precision_line", ""), file=sys.stderr)
        print(f"{result.frames} frames at {result.fps:g} fps, {result.width}x{result.height}, "
              f"{result.frames / max(result.total_s, 1e-9):.1f} frames/s -> {result.out_path}")

    return run_reported("lipsync sync", lambda: sync_from_args(args, settings), report)


def sync_from_args(args: argparse.Namespace, settings: Settings) -> SyncResult:
    """Run ``lipsync sync`` for parsed ``args``; raises instead of printing."""
    from tqdm import tqdm

    from models.wav2lip import load_wav2lip

    from ..bundle import pack_for_cpu
    from ..lipsync.boxes import make_box_planner
    from ..lipsync.engine import SyncOptions, default_batch_size, sync_lips
    from ..media import ensure_writable, read_audio
    from ..timing import StageTimer
    from ..weights.catalog import WAV2LIP_FILE

    face, out = Path(args.face), Path(args.out)
    for name, value in (("--resize-factor", args.resize_factor), ("--batch-size", args.batch_size or 1),
                        ("--keyframe-interval", args.keyframe_interval)):
        if value < 1:
            raise BadInputError(f"{name} must be at least 1, got {value}")
    if args.fps <= 0:
        raise BadInputError(f"--fps must be positive, got {args.fps}")
    ensure_writable(out)
    device = resolve_device(args.device or settings.device)
    timer = StageTimer(sync_cuda=device.type == "cuda")
    with timer.stage("load audio"):
        audio = read_audio(args.audio, sample_rate=16000)
    if audio.samples.size == 0:
        raise BadInputError(f"{args.audio}: the audio track is empty (zero length)")
    ckpt = Path(args.wav2lip) if args.wav2lip else settings.weights_dir / WAV2LIP_FILE
    precision = args.precision or settings.lipsync_precision
    dtype = resolve_precision(precision, device, settings.half_precision)
    args.precision_line = log_choice(device, settings.half_precision, lipsync=(precision, dtype),
                                     level=logging.DEBUG)
    with timer.stage("load model"):
        model = load_wav2lip(ckpt, device, dtype)
        if settings.pack_weights:
            model = pack_for_cpu(model, device, dtype)
    opts = SyncOptions(
        strategy=args.strategy, detector=args.detector, keyframe_interval=args.keyframe_interval,
        pads=tuple(args.pads), smooth=not args.nosmooth, box=tuple(args.box) if args.box else None,
        resize_factor=args.resize_factor,
        batch_size=args.batch_size or default_batch_size(device.type),
        loop_mode=args.loop_mode, round_paste=args.paste_round, blend=args.blend, image_fps=args.fps,
        max_pixels=args.max_pixels, codec=args.codec, preset=args.preset, crf=args.crf)
    bar = tqdm(total=None, unit="frame", desc="lip-sync", file=sys.stderr, disable=args.no_progress)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    planner = make_box_planner(settings.weights_dir, device.type)
    try:
        return sync_lips(face, audio, out, model, opts, planner, progress=progress, timer=timer)
    finally:
        bar.close()
