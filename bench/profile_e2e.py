"""Profile the optimized W-sentence path (warm, caches hit) with the torch profiler.

    .venv/bin/python -m bench.profile_e2e [--resize-factor 3] [--lipsync-precision auto|bf16] [--top 15]

Runs the optimized pipeline in-process against the GCS emulator on bench/e2e.py's standard
input: one warm-up request, then one profiled request. Prints the pipeline's step times and
the top operators by self CPU time (torch ops, plus ``record_function`` ranges).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from bench.e2e import BUCKET, WORK, WORKLOADS, standard_input
from service.dev.emulator import GCSEmulator
from service.dev.local_server import upload_to_emulator
from service.pipelines import LipVideoJob

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resize-factor", type=int, default=3)
    ap.add_argument("--lipsync-precision", default="auto")
    ap.add_argument("--workload", default="sentence", choices=list(WORKLOADS))
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    from service.dev.demo import ensure_demo_weights
    from service.runtime import ServiceRuntime
    from service.settings import Settings

    weights = ensure_demo_weights(ROOT / ".demo" / "weights")
    video = standard_input()
    with GCSEmulator(WORK / "emulator-profile") as emulator:
        emulator.create_bucket(BUCKET)
        src = upload_to_emulator(emulator, BUCKET, "input.mp4", video)
        rt = ServiceRuntime(Settings(weights_dir=weights, device="cpu", storage_emulator_host=emulator.host,
                                     resize_factor=args.resize_factor, work_dir=WORK / "svc-profile",
                                     tts_cache_dir=WORK / "tts-cache", lipsync_precision=args.lipsync_precision,
                                     overwrite_output=True))
        rt.preload()
        text, lang = WORKLOADS[args.workload]
        job = LipVideoJob(text, lang, src, f"gs://{BUCKET}/profile.mp4", "warmup")
        rt.run(job, optimized=True)

        def profiled():  # noqa: ANN202
            # the profiler records ops of the thread it runs in: the render's own (DeviceThread)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                return rt.run(job, optimized=True), prof

        result, prof = rt.device_thread.run(profiled)
        rt.close()
    print("step times:", {k: round(v, 3) for k, v in result.step_times.items()}, "cache hits:", result.cache_hits)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40))
    return 0


if __name__ == "__main__":
    sys.exit(main())
