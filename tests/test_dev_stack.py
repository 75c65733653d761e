"""The dev stack files are valid: the compose file parses, the Dockerfiles lint clean.
(No Docker engine here: this is what can be checked without one.)"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (it comes with the dev extra)")
    return path


def test_compose_file_is_valid() -> None:
    r = subprocess.run([_tool("docker-compose"), "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_compose_defines_api_emulator_weights_and_gpu_profile() -> None:
    r = subprocess.run([_tool("docker-compose"), "--profile", "gpu", "config"], cwd=ROOT, capture_output=True,
                       text=True, check=True)
    cfg = r.stdout
    assert "fsouza/fake-gcs-server" in cfg and "STORAGE_EMULATOR_HOST" in cfg
    assert "/weights" in cfg and "read_only: true" in cfg
    assert "capabilities:" in cfg and "gpu" in cfg


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.dev"])
def test_dockerfiles_lint_clean(dockerfile: str) -> None:
    r = subprocess.run([_tool("hadolint"), dockerfile], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_production_image_runs_as_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and "uv pip install" in text
    assert "api.main:app" in text


def test_compose_turns_keys_and_bucket_limits_on() -> None:
    r = subprocess.run([_tool("docker-compose"), "config", "--format", "json"], cwd=ROOT, capture_output=True,
                       text=True, check=True)
    import json

    from api.auth import KeyRing

    env = json.loads(r.stdout)["services"]["api"]["environment"]
    assert env["ALLOWED_BUCKETS"] == "lipsync-dev" and env["API_KEYS_FILE"] == "/config/api-keys.txt"
    keys = KeyRing.load(ROOT / "dev" / "api-keys.txt", frozenset({env["ADMIN_KEYS"]}))
    assert keys.identify("Bearer dev-key-change-me") == "dev"
    assert (ROOT / "dev" / "gcs-seed" / env["ALLOWED_BUCKETS"]).is_dir()


def test_lipsync_dev_gcs_serves_the_seeded_sample(tmp_path: Path) -> None:
    import signal
    import sys
    import time
    import urllib.request

    from service.dev.emulator import free_port
    from service.media import probe

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "service.commands.cli", "dev", "gcs", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        lines = [proc.stdout.readline() for _ in range(2)]  # type: ignore[union-attr]
        assert f"export STORAGE_EMULATOR_HOST=127.0.0.1:{port}" in "".join(lines), lines
        deadline = time.monotonic() + 10
        while True:
            try:
                url = f"http://127.0.0.1:{port}/storage/v1/b/lipsync-dev/o/user.mp4?alt=media"
                data = urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        (tmp_path / "user.mp4").write_bytes(data)
        info = probe(tmp_path / "user.mp4")
        assert info.has_audio and info.kind == "video"  # a user video the README's curl can render
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
