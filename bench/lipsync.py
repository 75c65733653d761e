"""Lip-sync engine benchmark: the default (optimized) engine vs the official-behaviour flags.

    .venv/bin/python -m bench.lipsync [--seconds 5] [--repeat 3] [--resize-factor 3 1] [--device cpu]

Generates a 1920×1080 30 fps face clip and espeak-ng speech of about the same length (once,
in .bench/), loads the generated-weights Wav2Lip, and runs each configuration ``--repeat``
times (alternating, so machine noise hits both alike). Reports per-stage seconds (stages
overlap in threads, so they can sum to more than the wall time), total wall time, output
frames/s, and peak RSS. Each run happens in a fresh subprocess so peak RSS is per run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time  # noqa: F401 - used by the child code
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORK = ROOT / ".bench"
SENTENCE = ("The quick brown fox jumps over the lazy dog while twelve happy people "
            "watch from the old wooden bridge.")


def prepare(seconds: float) -> tuple[Path, Path, Path]:
    from service.dev.demo import ensure_demo_weights
    from service.dev.samples import espeak_speech, make_face_video
    from service.tts import write_wav
    from service.types import Audio

    WORK.mkdir(exist_ok=True)
    face = WORK / f"face_1080p_{seconds:g}s.mp4"
    speech = WORK / f"speech_{seconds:g}s.wav"
    if not speech.exists():
        audio = espeak_speech(SENTENCE, speed_wpm=int(150 * 6.0 / seconds))
        write_wav(speech, Audio(audio.samples[: int(seconds * 16000)], 16000))
    if not face.exists():
        make_face_video(face, seconds)
    weights = ensure_demo_weights(ROOT / ".demo" / "weights")
    return face, speech, weights / "wav2lip_gan.pth"


def run_once(face: Path, speech: Path, ckpt: Path, flags: list[str], device: str) -> dict:
    """One `lipsync sync` in a child process; returns its stage table as JSON."""
    code = f"""
import json, resource, sys, time
from pathlib import Path
from service.settings import Settings
from service.commands.sync import add_sync_arguments
import argparse
p = argparse.ArgumentParser(); add_sync_arguments(p)
args = p.parse_args({json.dumps(['--face', str(face), '--audio', str(speech), '--out', str(WORK / 'out.mp4'),
                                  '--wav2lip', str(ckpt), '--device', device, '--no-progress', *flags])})
from service.commands.sync import sync_from_args
t0 = time.perf_counter()
r = sync_from_args(args, Settings())
wall = time.perf_counter() - t0
print(json.dumps({{"wall_s": wall, "sync_s": r.total_s, "frames": r.frames,
                  "stages": r.seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--resize-factor", type=int, nargs="+", default=[3, 1])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="also the default engine with --precision bf16")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from bench._machine import describe_machine

    face, speech, ckpt = prepare(args.seconds)
    configs = {}
    for rf in args.resize_factor:
        configs[f"default rf{rf}"] = ["--resize-factor", str(rf)]
        configs[f"official rf{rf}"] = ["--resize-factor", str(rf), "--strategy", "per-frame",
                                       "--batch-size", "128"]
        if args.bf16:
            configs[f"default bf16 rf{rf}"] = ["--resize-factor", str(rf), "--precision", "bf16"]
    runs: dict[str, list[dict]] = {k: [] for k in configs}
    for _ in range(args.repeat):
        for name, flags in configs.items():
            runs[name].append(run_once(face, speech, ckpt, flags, args.device))
            print(f"  {name:<16} {runs[name][-1]['sync_s']:7.2f} s", flush=True)
    machine = describe_machine()
    print(f"\nmachine: {json.dumps(machine)}\ninput: {face.name}, {args.seconds:g} s speech; "
          f"median of {args.repeat}")
    stages = ["decode", "detect", "mel", "infer", "paste", "encode"]
    print(f"{'config':<16}" + "".join(f"{s:>9}" for s in stages) + f"{'total':>9}{'fps':>8}{'RSS MB':>8}")
    summary = {}
    for name, rs in runs.items():
        med = {s: statistics.median(r["stages"].get(s, 0.0) for r in rs) for s in stages}
        total = statistics.median(r["sync_s"] for r in rs)
        fps = rs[0]["frames"] / total
        rss = max(r["peak_rss_mb"] for r in rs)
        summary[name] = {"stages": med, "total_s": total, "frames": rs[0]["frames"], "fps": fps,
                         "peak_rss_mb": rss, "totals": [r["sync_s"] for r in rs]}
        print(f"{name:<16}" + "".join(f"{med[s]:>9.2f}" for s in stages) + f"{total:>9.2f}{fps:>8.1f}{rss:>8.0f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "runs": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
