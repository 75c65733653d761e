"""``lipsync speak``: text in, a 16 kHz mono PCM16 WAV out (through the TTS audio cache)."""
from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from ..errors import BadInputError
from ..tts import ENGINE_NAMES, TextToSpeech, TTSConfig, write_wav
from ..tts.tempo import MAX_SPEED, MIN_SPEED
from .exit_codes import run_reported

log = logging.getLogger(__name__)



def add_speak_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text", required=True, help="word or sentences to speak (UTF-8)")
    p.add_argument("--lang", required=True, help="language code as the customer sends it: ko, en, ja, zh, ...")
    p.add_argument("--out", required=True, help="output .wav (16 kHz mono PCM16, written atomically)")
    p.add_argument("--engine", default=None, type=str.lower,
                   help=f"one of {', '.join(ENGINE_NAMES)} (default $TTS_ENGINE or espeak-ng)")
    p.add_argument("--speed", type=float, default=1.0,
                   help=f"tempo factor, pitch kept ({MIN_SPEED:g}..{MAX_SPEED:g}; default 1.0)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache-dir", default=None, help="audio cache folder (default $TTS_CACHE_DIR)")
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write the audio cache")


def run_speak(args: argparse.Namespace, settings: object) -> int:
    """Exit codes: 0 written, 2 bad input (text, language, engine, speed, output path), 1 the
    engine failed or the online service is unreachable. One-line messages on stderr."""
    return run_reported("lipsync speak", lambda: speak_from_args(args, settings), print)


def speak_from_args(args: argparse.Namespace, settings: object) -> str:
    """Run ``lipsync speak`` for parsed ``args``; returns the summary line, raises on failure."""
    out = Path(args.out)
    if out.suffix.lower() != ".wav":
        raise BadInputError(f"--out {out}: the output is a WAV file; give a name ending in .wav")
    if out.is_dir() or not out.parent.is_dir():
        raise BadInputError(f"--out {out}: folder {out.parent} does not exist (or the path is a folder)")
    config = TTSConfig.from_settings(settings)
    if args.engine:
        config = replace(config, engine=args.engine)
    if args.no_cache:
        config = replace(config, cache_dir=None)
    elif args.cache_dir:
        config = replace(config, cache_dir=Path(args.cache_dir).expanduser().resolve())
    with TextToSpeech.from_config(config) as tts:
        audio, hit = tts.synthesize_speech(args.text, args.lang, speed=args.speed)
    write_wav(out, audio)
    source = "cache hit" if hit else ("synthesized" if config.cache_dir else "synthesized, no cache")
    return (f"{out}: {audio.duration_s:.2f} s at {audio.sample_rate} Hz "
            f"({config.engine}, {args.lang}, speed {args.speed:g}, {source})")
