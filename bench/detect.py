"""Face detection on the service's cold path: the 1080p standard input, resize 3, ``static``.

    .venv/bin/python -m bench.detect [--root CHECKOUT] [--repeat 5]

Times what a first request for an input pays for its face box: the box planner (detection, and
the decode it needs) and then the render's own pass over the frames it writes, through a fresh
frame memo as the optimized service does — for W-word (30 output frames) and W-sentence (152).
Repeat requests for an input pay nothing (boxes and frames are cached per input).

``--root`` runs the service code of another checkout (e.g. ``git worktree add /tmp/old <commit>``)
with this interpreter, for a before/after in one sitting; planners older than the frame memo
detection (no ``resized`` argument) decode their own frames.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.detect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose service code runs (default: this one)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from bench.e2e import standard_input

    video = standard_input()
    # import the service package of --root, not this checkout's
    for name in [m for m in sys.modules if m == "service" or m.startswith("service.")]:
        del sys.modules[name]
    sys.path.insert(0, str(args.root.resolve()))
    boxes = importlib.import_module("service.lipsync.boxes")
    engine = importlib.import_module("service.lipsync.engine")
    memo_mod = importlib.import_module("service.lipsync.frame_memo")
    media = importlib.import_module("service.media")
    timing = importlib.import_module("service.timing")

    info = media.probe(video)
    planner = boxes.make_box_planner(ROOT / ".demo" / "weights", "cpu")
    reads_memo = "resized" in inspect.signature(planner).parameters
    opts = engine.SyncOptions(resize_factor=3, detector="opencv", strategy="static")
    result: dict = {"root": str(args.root), "planner_reads_the_frame_memo": reads_memo}
    for workload, n_out in (("word", 30), ("sentence", 152)):
        detect, total = [], []
        for rep in range(args.repeat + 1):
            memo = memo_mod.FrameMemo(lambda start: media.iter_frames(video, resize_factor=3, start=start),
                                      memo_mod.MemoryBudget(2 << 30))
            t0 = time.perf_counter()
            extra = {"resized": memo.open} if reads_memo else {}
            plan = planner(video, info, n_out, opts, timing.StageTimer(), **extra)
            t1 = time.perf_counter()
            for i, _ in enumerate(memo.open(), 1):  # the render's pass over the frames it writes
                if i >= min(n_out, info.frame_count):
                    break
            t2 = time.perf_counter()
            if rep:  # the first loads the detector
                detect.append(t1 - t0)
                total.append(t2 - t0)
        result[workload] = {"output_frames": n_out, "box": str(plan.boxes[0]),
                            "detect_median_s": round(statistics.median(detect), 3),
                            "detect_min_max_s": [round(min(detect), 3), round(max(detect), 3)],
                            "detect_plus_render_decode_median_s": round(statistics.median(total), 3)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
