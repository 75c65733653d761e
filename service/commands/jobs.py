"""``lipsync jobs``: submit, follow and cancel jobs of a running service (a client for scripts).

A thin client of the jobs API (``api/jobs.py``) on the standard library: one JSON request per
call, ``Authorization: Bearer <key>`` when a key is given. Exit codes as every ``lipsync``
command (``command_errors``): 0 done; 2 when the service refused what was sent (a 4xx answer,
or a job that failed on its input); 1 otherwise (a 5xx answer, an unreachable service, a job
that failed on the service's side, a ``--timeout``). Each failure is one line on stderr.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from .exit_codes import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK, exit_code_for_error_code

URL_ENV, KEY_ENV = "LIPSYNC_URL", "LIPSYNC_API_KEY"
JOBS_PATH = "/api/v1/jobs"
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
MAX_WAIT_S = 30.0  # the longest ?wait_s= the service holds an answer for
PROGRESS_POLL_S = 1.0  # ?wait_s= while a bar shows a running job: the service answers early only on a status change
NETWORK_SLACK_S = 30.0  # socket timeout beyond the time the service may hold an answer

Record = dict[str, Any]
OnRecord = Callable[[Record], None]


class JobsClientError(Exception):
    """A call or a wait that did not end well; ``exit_code`` is what the command returns."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The API never redirects; following one would send the key to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class JobsClient:
    """The jobs routes of the service at ``url`` (``http(s)://host:port``, no path)."""

    def __init__(self, url: str, key: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise JobsClientError(f"--url {url!r}: give the service's address as http://host:port "
                                  f"(or set {URL_ENV})", EXIT_BAD_INPUT)
        self.url = url.rstrip("/")
        self._key = key
        self._opener = urllib.request.build_opener(_NoRedirect)

    def submit(self, request: Record, idempotency_key: str | None = None) -> tuple[Record, bool]:
        """``POST /api/v1/jobs``: the answer (``job_id``, ``status``, ``status_url``) and whether
        this call created the job (False: an earlier one with the same ``Idempotency-Key`` did)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        status, body = self._call("POST", JOBS_PATH, request, headers)
        return body, status == 202

    def get(self, job_id: str, wait_s: float = 0.0) -> Record:
        """The job's record; with ``wait_s`` (0..30 s) the service holds the answer until its
        status changes or that time passes."""
        query = f"?wait_s={wait_s:.1f}" if wait_s > 0 else ""
        return self._call("GET", self._job_path(job_id) + query, timeout_s=wait_s + NETWORK_SLACK_S)[1]

    def cancel(self, job_id: str) -> Record:
        """``DELETE``: the record once canceled (a running job stops at its next step or batch)."""
        return self._call("DELETE", self._job_path(job_id), timeout_s=MAX_WAIT_S + NETWORK_SLACK_S)[1]

    def wait(self, job_id: str, timeout_s: float | None = None, on_record: OnRecord | None = None,
             poll_s: float = MAX_WAIT_S) -> Record:
        """Long-poll until the job is finished; its final record. ``on_record`` sees every
        record on the way; ``poll_s`` caps each poll (short polls keep a progress bar moving)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        record = self.get(job_id)
        while True:
            if on_record is not None:
                on_record(record)
            if record.get("status") in TERMINAL:
                return record
            wait_s = min(poll_s if record.get("status") == "running" else MAX_WAIT_S, MAX_WAIT_S)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JobsClientError(
                        f"job {job_id} is still {record.get('status')} after --timeout {timeout_s:g} s; it goes on "
                        f"in the service (`lipsync jobs wait {job_id}` to follow it, `lipsync jobs cancel "
                        f"{job_id}` to stop it)", EXIT_ERROR)
                wait_s = max(min(wait_s, left), 0.1)
            record = self.get(job_id, wait_s)

    def _job_path(self, job_id: str) -> str:
        return f"{JOBS_PATH}/{quote(job_id, safe='')}"

    def _call(self, method: str, path: str, body: Record | None = None, headers: dict[str, str] | None = None,
              timeout_s: float = NETWORK_SLACK_S) -> tuple[int, Record]:
        """One JSON request: (status, parsed body), or :class:`JobsClientError` for an error
        answer (exit 2 for 4xx, 1 for the rest) or no answer at all (exit 1)."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        if self._key:
            all_headers["Authorization"] = f"Bearer {self._key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with self._opener.open(req, timeout=timeout_s) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            raise _answer_error(e.code, e.read(), e.headers.get("Location")) from e
        except (OSError, http.client.HTTPException) as e:  # refused, DNS, TLS, timeout, reset, not HTTP
            reason = getattr(e, "reason", e)
            raise JobsClientError(f"cannot reach the service at {self.url}: {reason}", EXIT_ERROR) from e
        try:
            parsed = json.loads(raw)
        except ValueError as e:
            raise JobsClientError(f"{method} {path}: the service answered {status} with a body that is "
                                  "not JSON; is --url the lipsync service?", EXIT_ERROR) from e
        if not isinstance(parsed, dict):
            raise JobsClientError(f"{method} {path}: the service answered {status} with JSON that is not "
                                  "an object; is --url the lipsync service?", EXIT_ERROR)
        return status, parsed


def _answer_error(status: int, raw: bytes, location: str | None) -> JobsClientError:
    """An error answer as ``<code>: <message>``: the service's error body when it sent one."""
    exit_code = EXIT_BAD_INPUT if 400 <= status < 500 else EXIT_ERROR
    if 300 <= status < 400:
        return JobsClientError(f"http_{status}: the service redirects to {location}; give its base "
                               "address as --url", EXIT_ERROR)
    try:
        error = json.loads(raw)["error"]
        return JobsClientError(f"{error['code']}: {error['message']}", exit_code)
    except (ValueError, KeyError, TypeError):
        # not the service's error body: a proxy, a load balancer or another server answered
        text = " ".join(raw.decode("utf-8", "replace").split())[:200]
        return JobsClientError(f"http_{status}: {text or 'no body'}", exit_code)


def job_outcome(record: Record) -> tuple[int, str | None]:
    """A finished record's exit code and, unless it succeeded, its ``<code>: <message>`` line."""
    status = record.get("status")
    if status == "succeeded":
        return EXIT_OK, None
    error = record.get("error") or {}
    if status == "canceled" and not error:
        return EXIT_ERROR, f"canceled: job {record.get('job_id')} was canceled before it finished"
    code = str(error.get("code") or "internal_error")
    return exit_code_for_error_code(code), f"{code}: {error.get('message') or f'job {status}'}"


class _ProgressBar:
    """The job's step and fraction as a tqdm bar in percent on stderr."""

    def __init__(self, disable: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=100, unit="%", desc="queued", file=sys.stderr, disable=disable,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}]")

    def __call__(self, record: Record) -> None:
        progress = record.get("progress") or {}
        self._bar.set_description_str(str(progress.get("step", record.get("status", "?"))), refresh=False)
        self._bar.n = round(100 * min(max(float(progress.get("fraction", 0.0)), 0.0), 1.0))
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def add_jobs_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (f"Submit, follow and cancel jobs of a running lipsync service over its HTTP API. --url "
                     f"defaults to ${URL_ENV}, --key to ${KEY_ENV}.")
    p.epilog = ("exit codes: 0 done (wait: the job succeeded); 2 the service refused what was sent (a 4xx "
                "answer) or the job failed on its input (no_face, not_found, ...); 1 anything else (a 5xx "
                "answer, the service unreachable, the job failed on the service's side, --timeout)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None,
                        help=f"the service's address, e.g. http://localhost:8000 (default ${URL_ENV})")
    common.add_argument("--key", default=None,
                        help=f"API key, sent as 'Authorization: Bearer <key>' (default ${KEY_ENV}; prefer the "
                             "variable: other users of this machine can read command lines with ps)")
    follow = argparse.ArgumentParser(add_help=False)
    follow.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="give up waiting after S seconds (exit 1; the job goes on); default: no limit")
    follow.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    sub = p.add_subparsers(dest="jobs_command", required=True)
    s = sub.add_parser("submit", parents=[common, follow], help="submit a job; prints its id (or, with --wait, "
                                                                "its final record as JSON)")
    s.add_argument("--text", required=True, help="word or sentences to speak in the user's voice (UTF-8)")
    s.add_argument("--input", required=True, metavar="URI", help="the user's video: gs://bucket/object")
    s.add_argument("--output", required=True, metavar="URI", help="where the mp4 goes: gs://bucket/object")
    s.add_argument("--lang", default="ko", help="language of the text: ko, en, ja, zh, ... (default ko)")
    s.add_argument("--engine", default=None, type=str.lower, help="TTS engine (default: the service's TTS_ENGINE)")
    s.add_argument("--pipeline", default="optimized", choices=["optimized", "baseline"])
    s.add_argument("--resize-factor", type=int, default=None, metavar="N",
                   help="downscale frames by N before lip-sync (default: the service's RESIZE_FACTOR)")
    s.add_argument("--box", type=int, nargs=4, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="face box in pixels of the resized frame: skips face detection")
    s.add_argument("--webhook-url", default=None, metavar="URL", help="POSTed the record when the job finishes")
    s.add_argument("--idempotency-key", default=None, metavar="K",
                   help="submitting again with the same K and options returns the same job instead of a new one")
    s.add_argument("--wait", action="store_true", help="wait for the job as `lipsync jobs wait` does")

    st = sub.add_parser("status", parents=[common], help="print a job's record as JSON")
    st.add_argument("job_id", metavar="JOB_ID")
    w = sub.add_parser("wait", parents=[common, follow],
                       help="wait for a job to finish; prints its final record as JSON (exit 0 only if it succeeded)")
    w.add_argument("job_id", metavar="JOB_ID")
    c = sub.add_parser("cancel", parents=[common], help="cancel a job; prints its record as JSON")
    c.add_argument("job_id", metavar="JOB_ID")


def run_jobs(args: argparse.Namespace) -> int:
    """Run ``lipsync jobs <command>``; the exit code (see the module docstring)."""
    try:
        url = args.url or os.environ.get(URL_ENV)
        if not url:
            raise JobsClientError(f"no service address: give --url or set {URL_ENV}", EXIT_BAD_INPUT)
        client = JobsClient(url, args.key or os.environ.get(KEY_ENV) or None)
        if args.jobs_command == "submit":
            return _submit(client, args)
        if args.jobs_command == "status":
            _print_record(client.get(args.job_id))
            return EXIT_OK
        if args.jobs_command == "cancel":
            _print_record(client.cancel(args.job_id))
            return EXIT_OK
        return _wait(client, args.job_id, args)
    except JobsClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


def _submit(client: JobsClient, args: argparse.Namespace) -> int:
    request: Record = {"word": args.text, "user_video_gs": args.input, "output_video_gs": args.output,
                       "tts_lang": args.lang, "pipeline": args.pipeline}
    optional = {"tts_engine": args.engine, "resize_factor": args.resize_factor, "face_box": args.box,
                "webhook_url": args.webhook_url}
    request.update({k: v for k, v in optional.items() if v is not None})
    answer, created = client.submit(request, args.idempotency_key)
    job_id = answer.get("job_id")
    if not isinstance(job_id, str):
        raise JobsClientError("the service's answer to the submit has no job_id; is --url the lipsync service?",
                              EXIT_ERROR)
    if not args.wait:
        print(job_id)
        return EXIT_OK
    print(f"job {job_id}" + ("" if created else " (submitted earlier with this --idempotency-key)"),
          file=sys.stderr)  # stdout is the record: the id, for following the job some other way
    return _wait(client, job_id, args)


def _wait(client: JobsClient, job_id: str, args: argparse.Namespace) -> int:
    bar = _ProgressBar(disable=args.no_progress)
    try:
        record = client.wait(job_id, args.timeout, on_record=bar,
                             poll_s=MAX_WAIT_S if args.no_progress else PROGRESS_POLL_S)
    finally:
        bar.close()
    _print_record(record)
    code, line = job_outcome(record)
    if line is not None:
        print(f"error: {line}", file=sys.stderr)
    return code


def _print_record(record: Record) -> None:
    print(json.dumps(record, indent=2, ensure_ascii=False))
