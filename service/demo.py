"""``make demo``: the main job, offline, on generated weights.

1. writes architecture-exact checkpoints with generated (NOT trained) weights, once;
2. loads the model bundle onto the device, warms it up and prints the per-model table;
3. generates a user video (an animated face with speech) and a sentence of speech
   (espeak-ng), then lip-syncs the video to the speech and prints where the mp4 is.

With untrained weights the mouth region is deterministic noise: the demo proves the whole
path runs (decode → detect → mel → Wav2Lip → paste → H.264/AAC), not quality.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from .bundle import load_bundle, timing_table
from .settings import model_dtype, resolve_device
from .weights.formula import NOT_TRAINED_BANNER, write_test_checkpoint

log = logging.getLogger(__name__)

_DEMO_WEIGHTS = (("wav2lip", "wav2lip_gan.pth"), ("freevc", "freevc.pth"), ("wavlm", "WavLM-Large.pt"))
DEMO_SENTENCE = "Hello! This video was lip synced offline, on generated weights."


def ensure_demo_weights(weights_dir: Path) -> Path:
    """Write the generated checkpoints the demo needs, unless already there."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    for kind, name in _DEMO_WEIGHTS:
        path = weights_dir / name
        if not path.is_file():
            log.info("generating %s (architecture-exact, NOT trained)", path)
            write_test_checkpoint(kind, path)
    return weights_dir


def ensure_demo_media(work_dir: Path) -> tuple[Path, Path]:
    """The user's video (face + own voice) and the speech to lip-sync, generated once."""
    from .samples import espeak_speech, make_face_video, write_wav

    user_video = work_dir / "user_video.mp4"
    speech = work_dir / "speech.wav"
    if not user_video.exists():
        own_voice = espeak_speech("This is my own voice, recorded for the lip sync service.", "en-gb")
        make_face_video(user_video, 4.0, width=1280, height=720, fps=25.0, audio=own_voice)
    if not speech.exists():
        write_wav(speech, espeak_speech(DEMO_SENTENCE))
    return user_video, speech


def run_demo(work_dir: Path, device: str = "auto") -> int:
    from .lipsync.boxes import make_box_planner
    from .lipsync.engine import SyncOptions, sync_lips
    from .media import read_audio
    from .timing import format_table

    dev = resolve_device(device)
    weights = ensure_demo_weights(work_dir / "weights")
    print(NOT_TRAINED_BANNER, file=sys.stderr)
    bundle = load_bundle(weights, dev, model_dtype(dev, half_precision=True))
    print(f"\nModel bundle on {dev} (generated weights from {weights}):")
    print(timing_table(bundle))

    user_video, speech_path = ensure_demo_media(work_dir)
    speech = read_audio(speech_path, 16000)
    out = work_dir / "demo_lipsync.mp4"
    opts = SyncOptions(batch_size=128 if dev.type == "cuda" else 16)
    result = sync_lips(user_video, speech, out, bundle.wav2lip, opts,
                       make_box_planner(weights, dev.type))
    print()
    print(format_table(result.seconds, result.total_s, "Performance Analysis (lip-sync)"))
    print(f"\n{result.frames} frames, {result.width}x{result.height} at {result.fps:g} fps, "
          f"{result.audio_s:.2f} s of speech; face box {result.boxes[0]}")
    print(f"lip-synced video (generated weights, NOT trained): {out.resolve()}")
    return 0
