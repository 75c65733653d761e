"""What the official per-frame S3FD detection costs on this machine (issue 6's baseline gap).

    .venv/bin/python -m bench.s3fd [--frames 3] [--json OUT]

The customer's original pipeline (official Wav2Lip ``inference.py``) runs S3FD on every input
frame at full resolution before lip-syncing. Our baseline can only do that where the S3FD
weights exist; without them it falls back to the OpenCV cascade, which is far cheaper. This
script times our S3FD detector (face-alignment's network, the official pre-processing) on
frames of the standard 1920x1080 input and at the customer's ``resize_factor`` 3, with
randomly initialised weights written in the official layout: the network's cost does not
depend on its weight values (only the candidate decoding does, and it is a small part).
It prints seconds per frame (median) and what per-frame detection of the standard input's
150 frames would add to the baseline.
"""
from __future__ import annotations

import argparse
import datetime
import json
import socket
import statistics
import sys
import time
from pathlib import Path

import torch

from bench._machine import describe_machine
from bench.e2e import WORK, standard_input
from service.face.cascade import OpenCVCascadeDetector
from service.face.s3fd import S3FD_FILE, S3FDDetector
from service.media import iter_frames

ROOT = Path(__file__).resolve().parent.parent

INPUT_FRAMES = 150  # the standard input: 5 s at 30 fps


def time_per_frame(detect, frames: list) -> float:  # noqa: ANN001
    detect(frames[:1])  # warm-up: first-call allocations, oneDNN kernel selection
    times = []
    for f in frames:
        t0 = time.perf_counter()
        detect([f])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3, help="frames timed per size (median)")
    ap.add_argument("--json", type=Path, help="default bench/results/<date>-<host>-s3fd.json")
    args = ap.parse_args()
    from models.s3fd import S3FD

    weights = WORK / "s3fd-random" / S3FD_FILE
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(S3FD().state_dict(), weights)  # random values, official key layout
    video = standard_input()
    results: dict = {"machine": describe_machine(), "frames_timed": args.frames, "input_frames": INPUT_FRAMES,
                     "seconds_per_frame": {}}
    s3fd_det, cascade = S3FDDetector(weights, "cpu"), OpenCVCascadeDetector()
    for rf in (1, 3):
        frames = [f for _, f in zip(range(args.frames + 1), iter_frames(video, resize_factor=rf))]
        h, w = frames[0].shape[:2]
        row = {"s3fd": time_per_frame(s3fd_det.detect, frames), "opencv": time_per_frame(cascade.detect, frames)}
        results["seconds_per_frame"][f"{w}x{h}"] = row
        print(f"{w}x{h}: S3FD {row['s3fd']:.2f} s/frame, OpenCV cascade {row['opencv']:.3f} s/frame; "
              f"per-frame detection of {INPUT_FRAMES} frames: S3FD {row['s3fd'] * INPUT_FRAMES:.0f} s, "
              f"cascade {row['opencv'] * INPUT_FRAMES:.1f} s", flush=True)
    out = args.json or ROOT / "bench" / "results" / f"{datetime.date.today()}-{socket.gethostname()}-s3fd.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
