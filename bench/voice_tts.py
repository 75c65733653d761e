"""TTS benchmark: seconds to speak a word (~1 s of speech) and a 12-word sentence (~5 s).

    .venv/bin/python -m bench.voice_tts [--repeat 5] [--json]

espeak-ng only (offline; gTTS's time is Google's network round trip). Per workload:
- cold: no cache, a full synthesis (espeak-ng process, WAV decode, resample to 16 kHz);
- miss + store: a synthesis through an empty cache (adds hashing, the .npy write and
  metadata.json under the file lock);
- cached: a hit from the on-disk cache (lock, metadata read/write, .npy load, CRC check);
- speed 1.25: a cache hit plus the atempo tempo change.
Median of ``--repeat`` runs after one warm-up. espeak-ng's voice listing (run once per process
at first use) is timed separately as "probe".
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench._machine import describe_machine
from service.tts import EspeakEngine, TextToSpeech, TTSCache

ROOT = Path(__file__).resolve().parent.parent

WORKLOADS = {
    "word ko": ("안녕하세요", "ko"),
    "word en": ("Hello", "en"),
    "sentence en": ("The quick brown fox jumps over the lazy dog near the river.", "en"),
    "sentence ko": ("오늘은 날씨가 정말 좋아서 친구들과 함께 공원에 산책하러 가기로 했어요. 정말 기대돼요.", "ko"),
}


def median_s(fn: Callable[[], object], repeat: int, before: Callable[[], object] | None = None) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs after one warm-up; ``before`` runs untimed."""
    times = []
    for i in range(repeat + 1):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_workload(uncached: TextToSpeech, cached: TextToSpeech, text: str, lang: str,
                   repeat: int) -> dict[str, float]:
    assert cached.cache is not None
    audio, _ = uncached.synthesize_speech(text, lang)
    return {
        "speech_s": audio.duration_s,
        "words": len(text.split()),
        "cold": median_s(lambda: uncached.synthesize_speech(text, lang), repeat),
        "miss + store": median_s(lambda: cached.synthesize_speech(text, lang), repeat, before=cached.cache.clear),
        "cached": median_s(lambda: cached.synthesize_speech(text, lang), repeat),
        "speed 1.25": median_s(lambda: cached.synthesize_speech(text, lang, speed=1.25), repeat),
    }


def run(repeat: int) -> dict[str, object]:
    engine = EspeakEngine()
    t0 = time.perf_counter()
    engine.languages()
    probe_s = time.perf_counter() - t0
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tts-") as tmp:
        cache = TTSCache(Path(tmp) / "cache")
        uncached = TextToSpeech({"espeak-ng": engine})
        cached = TextToSpeech({"espeak-ng": engine}, cache=cache)
        for name, (text, lang) in WORKLOADS.items():
            results[name] = bench_workload(uncached, cached, text, lang, repeat)
        uncached.close()
        cached.close()
    return {"machine": describe_machine(), "repeat": repeat, "probe_s": probe_s, "workloads": results}


def format_table(report: dict[str, object]) -> str:
    rows = report["workloads"]
    assert isinstance(rows, dict)
    cols = ["cold", "miss + store", "cached", "speed 1.25"]
    lines = [f"TTS espeak-ng, median of {report['repeat']} (seconds); voice probe once: "
             f"{report['probe_s']:.3f} s",
             f"| workload | words | speech s | {' | '.join(cols)} |",
             "|---|---:|---:|" + "---:|" * len(cols)]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['words']} | {r['speech_s']:.2f} | "
                     + " | ".join(f"{r[c]:.4f}" for c in cols) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    args = p.parse_args()
    report = run(args.repeat)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
