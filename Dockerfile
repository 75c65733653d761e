# Production image: CUDA runtime, Python 3.11 via uv, non-root, weights mounted read-only.
#   docker build -t lipsync-service .
#   docker run --gpus all -p 8000:8000 -v $PWD/weights:/weights:ro \
#     -v $PWD/api-keys.txt:/config/api-keys.txt:ro -e API_KEYS_FILE=/config/api-keys.txt -e ADMIN_KEYS=ops \
#     -e ALLOWED_BUCKETS=my-input-bucket,my-output-bucket --stop-timeout 40 lipsync-service
# api-keys.txt holds name:sha256-hex-of-key lines (README "Keys and bucket limits"); without
# API_KEYS_FILE and ALLOWED_BUCKETS the service is open (it warns at start-up). On SIGTERM it
# lets renders finish for SHUTDOWN_GRACE_S (30 s): give the container a longer stop timeout.
# GET / serves a page to try the service (UI_ENABLED, default true): set -e UI_ENABLED=false for
# an API-only deployment, and UPLOAD_STORE=gs://bucket/prefix for the page's uploads and outputs.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON=3.11 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    WEIGHTS_DIR=/weights \
    WORK_DIR=/tmp/lipsync \
    TTS_CACHE_DIR=/var/cache/lipsync/tts \
    DEVICE=auto \
    SHUTDOWN_GRACE_S=30 \
    LOG_FORMAT=json \
    HF_HUB_OFFLINE=1

# espeak-ng: the offline TTS engine; curl: the health check
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=ghcr.io/astral-sh/uv:0.8.22 /uv /usr/local/bin/uv

WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY service ./service
COPY models ./models
# EXTRAS=[cluster] adds Ray Serve (`lipsync serve --ray`, the KubeRay image); empty: the embedded service
ARG EXTRAS=""
# torch 2.13 with CUDA from the PyTorch index, then the project; resemblyzer (its packaged
# speaker-encoder weights) without its dependency list (it would pull webrtcvad). The S3FD
# network is models/s3fd.py: face-alignment, scikit-image and numba are not installed.
RUN uv venv /opt/venv --python 3.11 \
    && uv pip install --python /opt/venv/bin/python --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0 \
    && uv pip install --python /opt/venv/bin/python ".${EXTRAS}" \
    && uv pip install --python /opt/venv/bin/python --no-deps resemblyzer==0.1.4

RUN useradd --create-home --uid 10001 lipsync \
    && mkdir -p /weights /var/cache/lipsync/tts /tmp/lipsync \
    && chown -R lipsync /var/cache/lipsync /tmp/lipsync
USER 10001

VOLUME ["/weights"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8000/health"]
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
