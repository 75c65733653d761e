"""Scale benchmark: N jobs over M input videos through 1 and 2 Ray Serve renderer replicas,
with and without cache affinity.

    .venv/bin/python -m bench.scale [--jobs 12] [--inputs 3] [--replicas 1 2] [--device cpu|cuda] [--json OUT]

Each configuration is a fresh ``lipsync serve --ray`` (a local cluster) against one GCS
emulator, with the same generated inputs (720p, 2 s, 30 fps, with speech). After the
replicas are warm, all N jobs are submitted at once (input i mod M, a different short
sentence each) and followed to the end. Reported per configuration: jobs/min (N over the
wall time from the first submit to the last finish), p50/p95 latency (submit to finish),
and the frames-cache hit rate (the share of jobs whose decoded frames were already in the
replica that rendered them). On 2 CPU cores the replicas share the cores, so the point there
is the mechanism and the hit rate; on a GPU machine (one GPU per replica) the same script
measures real scaling.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench._machine import describe_machine
from bench.charts import scale_chart
from service.dev.emulator import GCSEmulator, free_port
from service.dev.local_server import upload_to_emulator, wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "scale"
BUCKET = "bench-scale"
TEXTS = ("Hello there.", "Good morning.", "See you soon.", "Thank you.", "Welcome back.", "Nice to meet you.")


def _http(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(url, json.dumps(body).encode() if body else None,
                                 {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as e:
        return json.loads(e.read())  # type: ignore[no-any-return]


def make_inputs(n: int) -> list[Path]:
    from service.dev.samples import espeak_speech, make_face_video

    WORK.mkdir(parents=True, exist_ok=True)
    voice = espeak_speech("This is my own voice, recorded for the service.", "en-gb")
    paths = []
    for i in range(n):
        path = WORK / f"input-{i}.mp4"
        if not path.exists():
            make_face_video(path, 2.0, 1280, 720, 30.0, audio=voice)
        paths.append(path)
    return paths


def run_config(emulator: GCSEmulator, weights: str, replicas: int, affinity: bool, jobs: int, inputs: int,
               device: str) -> dict[str, Any]:
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="lipsync-scale-"))
    env = {**os.environ, "WEIGHTS_DIR": weights, "STORAGE_EMULATOR_HOST": emulator.host, "WORK_DIR": str(tmp / "w"),
           "TTS_CACHE_DIR": str(tmp / "tts"), "DEVICE": device, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0", "MAX_QUEUED_JOBS": str(jobs + 10)}
    gpus = "1" if device == "cuda" else "0"
    cmd = [sys.executable, "-m", "service.commands.cli", "serve", "--ray", "--port", str(port),
           "--replicas", str(replicas), "--gpus-per-replica", gpus,
           "--cpus-per-replica", "0.5" if device == "cpu" else "2"]
    if not affinity:
        cmd.append("--no-affinity")
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, 600, alive=lambda: proc.poll() is None,
                         why=lambda: (tmp / "serve.log").read_text()[-3000:])
        started = time.perf_counter()
        ids = []
        for j in range(jobs):
            body = {"word": TEXTS[j % len(TEXTS)] + f" Number {j}.", "tts_lang": "en",
                    "user_video_gs": f"gs://{BUCKET}/input-{j % inputs}.mp4",
                    "output_video_gs": f"gs://{BUCKET}/out/{replicas}-{affinity}-{j}.mp4"}
            created = _http(f"{url}/api/v1/jobs", "POST", body)
            if "job_id" not in created:
                raise RuntimeError(f"submit failed: {created}")
            ids.append(created["job_id"])
        records = []
        for job_id in ids:
            while True:
                record = _http(f"{url}/api/v1/jobs/{job_id}?wait_s=20")
                if record.get("finished_at"):
                    records.append(record)
                    break
        wall = time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    ok = [r for r in records if r["status"] == "succeeded"]
    latencies = sorted((_t(r["finished_at"]) - _t(r["created_at"])) for r in ok)
    return {"replicas": replicas, "affinity": affinity, "jobs": jobs, "succeeded": len(ok),
            "jobs_per_min": round(60 * len(ok) / wall, 2), "wall_s": round(wall, 2),
            "p50_s": round(statistics.median(latencies), 2) if latencies else None,
            "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2) if latencies else None,
            "frames_hit_rate": round(sum(r["result"]["cache_hits"]["frames"] for r in ok) / max(1, len(ok)), 3),
            "replicas_used": len({r["served_by"] for r in ok})}


def _t(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=12)
    p.add_argument("--inputs", type=int, default=3)
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--weights", default=str(ROOT / ".demo" / "weights"),
                   help="WEIGHTS_DIR (default .demo/weights, made by `make demo`)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if not Path(args.weights, "wav2lip_gan.pth").is_file():
        p.error(f"no weights in {args.weights}: run `make demo` or `lipsync weights make-test --out {args.weights}`")
    emulator = GCSEmulator(WORK / "gcs")
    emulator.start()
    try:
        emulator.create_bucket(BUCKET)
        for path in make_inputs(args.inputs):
            upload_to_emulator(emulator, BUCKET, path.name, path)
        rows = []
        for replicas in args.replicas:
            for affinity in (True, False):
                row = run_config(emulator, args.weights, replicas, affinity, args.jobs, args.inputs, args.device)
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        emulator.stop()
    result = {"machine": describe_machine(), "device": args.device, "jobs": args.jobs, "inputs": args.inputs,
              "rows": rows}
    print(f"{'replicas':>8} {'affinity':>8} {'jobs/min':>9} {'p50 s':>7} {'p95 s':>7} {'frames hit':>10} {'used':>5}")
    for r in rows:
        print(f"{r['replicas']:>8} {str(r['affinity']):>8} {r['jobs_per_min']:>9} {r['p50_s']:>7} {r['p95_s']:>7} "
              f"{r['frames_hit_rate']:>10} {r['replicas_used']:>5}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        scale_chart(result, Path(args.json).with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
