"""Voice benchmark (issue 4): TTS cold and cached, then speaker embedding, WavLM and the
FreeVC synthesizer for 1 s and 5 s of speech, fp32 and the faster variants.

    .venv/bin/python bench/voice.py [--repeat 5]

Runs ``bench/voice_tts.py`` and ``bench/voice_convert.py`` one after the other (each has
more options; see their ``--help``).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    code = 0
    for script in ("voice_tts.py", "voice_convert.py"):
        print(f"\n### {script}", flush=True)
        code |= subprocess.run([sys.executable, str(HERE / script), "--repeat", str(args.repeat)],
                               check=False).returncode
    return code


if __name__ == "__main__":
    sys.exit(main())
