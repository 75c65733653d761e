"""``make demo``: the main job, offline, through the real service path, on generated weights.

1. writes architecture-exact checkpoints with generated (NOT trained) weights, once;
2. generates a user video (an animated face speaking in "its own" voice);
3. starts the GCS emulator (fake-gcs-server) and uploads the video to ``gs://lipsync-demo``;
4. starts the HTTP service (models preloaded and warmed), calls
   ``POST /api/v1/lip-video-optimized`` twice (a new video, then a repeat that hits the
   caches), downloads the result and prints each response's step times;
5. prints where the mp4 is. The "Performance Analysis" blocks are the service's own logs.

With untrained weights the mouth region and the voice are deterministic noise: the demo
proves the whole path runs (download → TTS → FreeVC → Wav2Lip → H.264/AAC → upload).
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ..weights.catalog import FREEVC_FILE, WAV2LIP_FILE, WAVLM_FILE
from ..weights.formula import NOT_TRAINED_BANNER, write_test_checkpoint

log = logging.getLogger(__name__)

_DEMO_WEIGHTS = (("wav2lip", WAV2LIP_FILE), ("freevc", FREEVC_FILE["freevc"]), ("wavlm", WAVLM_FILE))
DEMO_WORD = "Hello! This video was lip synced offline."
BUCKET = "lipsync-demo"


def ensure_demo_weights(weights_dir: Path) -> Path:
    """Write the generated checkpoints the demo needs, unless already there."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    for kind, name in _DEMO_WEIGHTS:
        path = weights_dir / name
        if not path.is_file():
            log.info("generating %s (architecture-exact, NOT trained)", path)
            write_test_checkpoint(kind, path)
    return weights_dir


def ensure_demo_video(work_dir: Path) -> Path:
    """The user's video: a face speaking with its own voice (generated once)."""
    from .samples import espeak_speech, make_face_video

    user_video = work_dir / "user_video.mp4"
    if not user_video.exists():
        own_voice = espeak_speech("This is my own voice, recorded for the lip sync service.", "en-gb")
        make_face_video(user_video, 4.0, width=1280, height=720, fps=25.0, audio=own_voice)
    return user_video


def run_demo(work_dir: Path, device: str = "auto") -> int:
    from ..settings import Settings
    from .emulator import GCSEmulator
    from .local_server import call, download_from_emulator, local_service, upload_to_emulator

    work_dir = work_dir.resolve()
    weights = ensure_demo_weights(work_dir / "weights")
    print(NOT_TRAINED_BANNER, file=sys.stderr)
    user_video = ensure_demo_video(work_dir)
    settings = Settings(weights_dir=weights, device=device, work_dir=work_dir / "service",  # type: ignore[arg-type]
                        tts_cache_dir=work_dir / "tts-cache", preload_models=True, overwrite_output=True)
    with GCSEmulator(work_dir / "emulator") as emulator:
        emulator.create_bucket(BUCKET)
        src = upload_to_emulator(emulator, BUCKET, "user_video.mp4", user_video)
        print(f"\nGCS emulator at {emulator.url}; uploaded {src}")
        with local_service(settings, emulator) as url:
            status, health = call(url, "GET", "/health")
            print(f"service at {url}: device {health['device']}, models {health['models_loaded']}")
            for attempt, out_name in (("new video", "result.mp4"), ("repeat (caches)", "result_repeat.mp4")):
                body = {"word": DEMO_WORD, "user_video_gs": src, "output_video_gs": f"gs://{BUCKET}/{out_name}",
                        "tts_lang": "en"}
                status, resp = call(url, "POST", "/api/v1/lip-video-optimized", body)
                if status != 200:
                    print(f"request failed ({status}): {json.dumps(resp)}", file=sys.stderr)
                    return 1
                print(f"\n{attempt}: {resp['output_video_gs']} ({resp['duration_s']:.2f} s of video)")
                print("  step_times: " + ", ".join(f"{k} {v:.2f}s" for k, v in resp["step_times"].items()))
                hits = resp["cache_hits"].items()
                print("  cache_hits: " + ", ".join(f"{k}={'hit' if v else 'miss'}" for k, v in hits))
        out = download_from_emulator(emulator, BUCKET, "result.mp4", work_dir / "demo_lipsync.mp4")
    print(f"\nlip-synced video (generated weights, NOT trained): {out}")
    return 0
