"""``lipsync jobs`` against the real service: uvicorn on loopback (``serve_local``), API keys
on, the GCS emulator, real renders with generated weights. One service start for the module."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.commands.cli import main
from service.commands.exit_codes import exit_code_for_error_code
from service.dev.emulator import free_port
from service.dev.local_server import local_service

from .gcs_emulator import EmulatorBucket, GCSEmulator
from .test_api import _settings, media  # noqa: F401 - fixture

KEY = "cli-jobs-test-key-0123456789"
WORD = "Hi there."


@pytest.fixture(scope="module")
def bucket(gcs_emulator: GCSEmulator, media: dict[str, bytes]) -> EmulatorBucket:  # noqa: F811
    b: EmulatorBucket = gcs_emulator.create_bucket()  # type: ignore[assignment]
    b.put("in.mp4", media["face"], "video/mp4")
    b.put("notes.mp4", b"these are notes, not a video\n", "video/mp4")
    return b


@pytest.fixture(scope="module")
def service_url(weights_dir: Path, gcs_emulator: GCSEmulator, tmp_path_factory: pytest.TempPathFactory,
                ) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("cli-jobs")
    keys = tmp / "api-keys.txt"
    keys.write_text(f"# test keys\nscripts:{hashlib.sha256(KEY.encode()).hexdigest()}\n")
    with local_service(_settings(weights_dir, gcs_emulator, tmp, api_keys_file=keys), gcs_emulator) as url:
        yield url


@pytest.fixture
def env(service_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The service's address and key in the environment, as a script would set them."""
    monkeypatch.setenv("LIPSYNC_URL", service_url)
    monkeypatch.setenv("LIPSYNC_API_KEY", KEY)
    return service_url


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["jobs", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _submit_args(bucket: EmulatorBucket, src: str, dst: str) -> list[str]:
    return ["submit", "--text", WORD, "--input", bucket.uri(src), "--output", bucket.uri(dst), "--lang", "en"]


def _one_error_line(err: str, prefix: str) -> None:
    """One ``error:`` line (the service, in this process, logs to the same stderr)."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(prefix), err


def test_submit_then_wait_status_and_cancel(env: str, bucket: EmulatorBucket,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, *_submit_args(bucket, "in.mp4", "out.mp4"), "--idempotency-key", "run-1")
    assert code == 0, err
    job_id = out.strip()
    assert job_id.startswith("job_") and out.count("\n") == 1

    # the same key and options: the same job, not a second render
    code, out, err = _run(capsys, *_submit_args(bucket, "in.mp4", "out.mp4"), "--idempotency-key", "run-1")
    assert (code, out.strip()) == (0, job_id), err

    code, out, err = _run(capsys, "wait", job_id, "--timeout", "0.3", "--no-progress")
    assert code == 1 and out == "", err
    _one_error_line(err, f"error: job {job_id} is still ")
    assert "--timeout 0.3 s" in err

    code, out, err = _run(capsys, "wait", job_id)
    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "succeeded" and record["job_id"] == job_id
    assert record["result"]["output_video_gs"] == bucket.uri("out.mp4")
    assert bucket.exists("out.mp4")
    assert "done: 100%" in err  # the progress bar, on stderr

    code, out, err = _run(capsys, "status", job_id)
    assert code == 0 and err == ""
    status = json.loads(out)
    assert status["status"] == "succeeded" and status["progress"] == {"step": "done", "fraction": 1.0}

    code, out, err = _run(capsys, "cancel", job_id)
    assert code == 2 and out == ""
    _one_error_line(err, "error: job_finished: ")


def test_submit_wait_in_one_go(env: str, bucket: EmulatorBucket, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, *_submit_args(bucket, "in.mp4", "again.mp4"), "--wait", "--no-progress")
    assert code == 0, err
    record = json.loads(out)  # stdout is the record alone; the id went to stderr
    assert record["status"] == "succeeded" and record["job_id"] in err
    assert bucket.exists("again.mp4")


def test_a_job_failing_on_its_input_exits_2(env: str, bucket: EmulatorBucket,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, *_submit_args(bucket, "notes.mp4", "notes-out.mp4"), "--wait", "--no-progress")
    assert code == 2
    assert json.loads(out)["status"] == "failed"
    _one_error_line(err, "error: unsupported_media: ")
    assert not bucket.exists("notes-out.mp4")


def test_missing_input_object_is_refused_at_submit(env: str, bucket: EmulatorBucket,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, *_submit_args(bucket, "nope.mp4", "nope-out.mp4"))
    assert code == 2 and out == ""
    _one_error_line(err, "error: not_found: ")
    assert bucket.uri("nope.mp4") in err


def test_keys(env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LIPSYNC_API_KEY")
    code, out, err = _run(capsys, "status", "job_0123")
    assert code == 2 and out == ""
    _one_error_line(err, "error: unauthorized: ")

    code, _, err = _run(capsys, "status", "--key", "not-the-key", "job_0123")
    assert code == 2
    _one_error_line(err, "error: unauthorized: ")

    # past the key check: the service looks for the job
    code, _, err = _run(capsys, "status", "--url", env, "--key", KEY, "job_0123")
    assert code == 2
    _one_error_line(err, "error: not_found: ")


def test_unreachable_service_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LIPSYNC_API_KEY", raising=False)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = _run(capsys, "status", "--url", url, "job_0123")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: cannot reach the service at {url}: "), err


@pytest.mark.parametrize("argv, message", [
    (["status", "job_0123"], "error: no service address: give --url or set LIPSYNC_URL"),
    (["status", "--url", "localhost:8000", "job_0123"], "error: --url 'localhost:8000': give the service's"),
])
def test_service_address_is_checked(argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LIPSYNC_URL", raising=False)
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and err.startswith(message), err


@pytest.mark.parametrize("code, exit_code", [
    ("no_face", 2), ("job_finished", 2), ("unauthorized", 2), ("storage_unavailable", 1), ("interrupted", 1),
    ("internal_error", 1), ("a_code_from_a_newer_service", 1)])
def test_exit_code_for_error_code(code: str, exit_code: int) -> None:
    assert exit_code_for_error_code(code) == exit_code
