#!/usr/bin/env bash
# bench.e2e on a lent GPU machine whose image has torch but not the service stack (see
# bench/RESULTS.md, "GPU"). Run from the repository root by the `device` tool with
#   carry: .whl (cp312 wheels: pip download --only-binary=:all: --python-version 3.12 ...),
#          .espeak (espeak-ng with its shared libraries and en/ko data, copied from Debian),
#          .bench/standard_1080p30_5s.mp4, .bench/tts-cache (made by a CPU run of bench.e2e);
# --box: the image's OpenCV 5 has no Haar cascade, so the face box is given (no detection)
# Writes the JSON and the server logs to $OUT.
set -euo pipefail
PY=$(command -v python3 || command -v python)
"$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PATH="$PWD/.espeak/bin:$PATH" HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
lscpu | grep -E "Model name|^CPU\(s\)" || true
espeak-ng --version
t0=$(date +%s)
"$PY" -c "import sys; from service.commands.cli import main; sys.exit(main(sys.argv[1:]))" \
    weights make-test --out .demo/weights --speaker >/dev/null
echo "weights generated in $(( $(date +%s) - t0 )) s"
"$PY" -m bench.e2e --device cuda --storage file --box --fp32 "$@" --json "$OUT/e2e-cuda.json" 2>&1 | tee "$OUT/e2e.log" | tail -40
cp .bench/server-*.log "$OUT/" 2>/dev/null || true
