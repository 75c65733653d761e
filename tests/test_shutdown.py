"""Nothing left after a crash or a stop: real processes, real signals.

- ``lipsync sync`` killed with SIGTERM mid-render removes its ``.part`` output (exit 143).
- A server killed with ``kill -9`` mid-render leaves its request folder; the next start
  removes it.
- SIGTERM: in-flight renders finish within ``SHUTDOWN_GRACE_S``; past it they stop at the next
  step or batch, answer 503 ``interrupted``, and leave no output object and no temp files.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.dev.emulator import free_port
from service.dev.local_server import wait_until_ready
from service.dev.samples import espeak_speech, make_face_video
from service.tts import write_wav

from .conftest import DATA
from .gcs_emulator import EmulatorBucket, GCSEmulator

# signals go out as soon as a render's request folder appears: a short text is enough
TEXT = "Hello there, friend."
# the CLI's partial output appears only once frames are encoded: about 16 s of speech
LONG_TEXT = ("This sentence is long on purpose, so that the render is still running when the "
             "signal arrives, and the command has to decide what to do with it.")
# uvicorn re-raises the signal once it has shut down, so supervisors see "terminated by SIGTERM"
STOPPED_BY_SIGTERM = (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def user_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("shutdown-media")
    voice = espeak_speech("This is my own voice, recorded for the service.", "en-gb")
    return make_face_video(d / "user.mp4", 2.0, width=480, height=270, fps=25.0, audio=voice).read_bytes()


def _wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _request_dirs(work: Path) -> list[Path]:
    return list(work.glob("req-*")) if work.exists() else []


@contextmanager
def server(weights_dir: Path, emulator: GCSEmulator, work: Path, grace_s: float,
           preload: bool = True) -> Iterator[tuple[subprocess.Popen, str]]:
    """A uvicorn process serving the app; ``preload=False``: the baseline pipeline, which loads
    its models per request (a quick start, for a server that is only there to be killed)."""
    port = free_port()
    env = {**os.environ, "WEIGHTS_DIR": str(weights_dir), "STORAGE_EMULATOR_HOST": emulator.host,
           "WORK_DIR": str(work), "TTS_CACHE_DIR": str(work.parent / "tts"), "DEVICE": "cpu",
           "RESIZE_FACTOR": "1", "SHUTDOWN_GRACE_S": str(grace_s), "HF_HUB_OFFLINE": "1",
           "PRELOAD_MODELS": str(preload).lower(), "USE_OPTIMIZED": str(preload).lower()}
    log = (work.parent / f"server-{port}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    try:
        wait_until_ready(url, 180, alive=lambda: proc.poll() is None, path="/ready" if preload else "/health",
                         why=lambda: (work.parent / f"server-{port}.log").read_text()[-4000:])
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        log.close()


def _post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(f"{url}/api/v1/lip-video", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _body(bucket: EmulatorBucket, dst: str) -> dict[str, object]:
    return {"word": TEXT, "user_video_gs": bucket.uri("in.mp4"), "output_video_gs": bucket.uri(dst),
            "tts_lang": "en"}


def _get(url: str, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}{path}", timeout=60) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def test_kill9_mid_job_the_job_finishes_after_restart_and_sigterm_lets_renders_finish(
        weights_dir: Path, gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket, user_video: bytes,
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    gcs_bucket.put("in.mp4", user_video, "video/mp4")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    with server(weights_dir, gcs_emulator, work, grace_s=120, preload=False) as (proc, url):
        req = urllib.request.Request(f"{url}/api/v1/jobs", json.dumps(_body(gcs_bucket, "resumed.mp4") | {
            "pipeline": "baseline"}).encode(), {"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 202
            job_id = json.loads(r.read())["job_id"]
        _wait_for(lambda: _request_dirs(work), 60, "the render to start")
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    left = _request_dirs(work)
    assert left, "kill -9 should have left the request folder behind"
    assert not gcs_bucket.exists("resumed.mp4")

    with server(weights_dir, gcs_emulator, work, grace_s=120) as (proc, url):
        # (the resumed job makes a request folder of its own: look for the old ones only)
        assert not any(p.exists() for p in left), "the start-up must remove what the killed process left"
        record = _get(url, f"/api/v1/jobs/{job_id}?wait_s=30")
        while record["status"] in ("queued", "running"):
            record = _get(url, f"/api/v1/jobs/{job_id}?wait_s=30")
        assert record["status"] == "succeeded" and record["attempts"] == 2, record
        assert gcs_bucket.exists("resumed.mp4")

        pending = pool.submit(_post, url, _body(gcs_bucket, "graceful.mp4"))
        _wait_for(lambda: _request_dirs(work), 60, "the render to start")
        proc.send_signal(signal.SIGTERM)
        status, body = pending.result(timeout=300)
        assert status == 200, body  # finished within the grace period
        assert proc.wait(timeout=60) in STOPPED_BY_SIGTERM
    assert gcs_bucket.exists("graceful.mp4")
    assert not _request_dirs(work)


def test_sigterm_past_the_grace_interrupts_cleanly(weights_dir: Path, gcs_emulator: GCSEmulator,
                                                   gcs_bucket: EmulatorBucket, user_video: bytes,
                                                   tmp_path: Path) -> None:
    work = tmp_path / "work"
    gcs_bucket.put("in.mp4", user_video, "video/mp4")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    with server(weights_dir, gcs_emulator, work, grace_s=0) as (proc, url):
        pending = pool.submit(_post, url, _body(gcs_bucket, "interrupted.mp4"))
        _wait_for(lambda: _request_dirs(work), 60, "the render to start")
        proc.send_signal(signal.SIGTERM)
        status, body = pending.result(timeout=120)
        assert status == 503 and body["error"]["code"] == "interrupted", body  # type: ignore[index]
        assert proc.wait(timeout=60) in STOPPED_BY_SIGTERM
    assert not gcs_bucket.exists("interrupted.mp4")
    assert not _request_dirs(work)


def test_cli_sigterm_removes_the_partial_output(weights_dir: Path, tmp_path: Path) -> None:
    speech = write_wav(tmp_path / "long.wav", espeak_speech(LONG_TEXT + " " + LONG_TEXT, "en-us"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "service.commands.cli", "sync", "--face", str(DATA / "face_dev.mp4"),
                             "--audio", str(speech), "--out", str(out_dir / "result.mp4"), "--device", "cpu",
                             "--wav2lip", str(weights_dir / "wav2lip_gan.pth"), "--box", "135", "295", "327", "477",
                             "--no-progress"], stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    _wait_for(lambda: any(out_dir.iterdir()), 120, "the partial output")
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    assert b"terminated" in err
    assert list(out_dir.iterdir()) == []
