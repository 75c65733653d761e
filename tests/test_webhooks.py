"""Webhooks: SSRF checks with a fake resolver, deliveries to a real HTTP server on loopback."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from service.errors import WebhookNotAllowedError
from service.jobs.webhooks import EVENTS, DeliveryOutcome, check_webhook_url, deliver, sign

SECRET = "s3cret-webhook-key"
LOOPBACK = frozenset({"127.0.0.1"})
BODY = json.dumps({"job_id": "j-1", "status": "succeeded", "output_uri": "gs://out/v.mp4"}).encode()


class FakeDns:
    """A resolver over a fixed table; unknown names fail like socket.getaddrinfo does. Records lookups."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


DNS = FakeDns({
    "hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "localhost": ["127.0.0.1", "::1"],
    "metadata.google.internal": ["93.184.215.14"],  # the name alone is refused, whatever it resolves to
    "rebind.example.com": ["10.1.2.3"],
    "mixed.example.com": ["93.184.215.14", "192.168.0.7"],  # one private answer is enough to refuse
    "2130706433": ["93.184.215.14"],
    "empty.example.com": [],
})


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What the fixture server saw, and the statuses it answers in turn (200 once they run out;
    STALL: no answer until the test ends)."""

    url: str
    statuses: list[int] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


STALL = 0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(Recorded(self.path, dict(self.headers.items()), body))
            status = state.statuses.pop(0) if state.statuses else 200
            if status == STALL:
                state.release.wait(timeout=5)
                return
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/lipsync?token=abc"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nothing else takes it) but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class Sleeps(list[float]):
    """A fake ``sleep`` that records the backoff delays and returns at once."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def send(url: str, **kwargs: Any) -> DeliveryOutcome:
    kwargs.setdefault("allowed_hosts", LOOPBACK)
    kwargs.setdefault("resolve", DNS)
    kwargs.setdefault("sleep", Sleeps())
    return deliver(url, BODY, EVENTS["succeeded"], SECRET, **kwargs)


# --- delivery -------------------------------------------------------------------------------------


def test_delivery_carries_headers_exact_body_and_a_verifiable_signature(receiver: Receiver) -> None:
    outcome = send(receiver.url)

    assert outcome == DeliveryOutcome(delivered=True, attempts=1, last_status=200)
    [request] = receiver.requests
    assert request.path == "/hooks/lipsync?token=abc"
    assert request.body == BODY
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Lipsync-Event"] == "job.succeeded"
    assert uuid.UUID(request.headers["X-Lipsync-Delivery"]).version == 4
    # what a receiver does: recompute over the raw body and compare in constant time
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, request.headers["X-Lipsync-Signature"])
    assert not hmac.compare_digest(sign(request.body, "another-secret"), request.headers["X-Lipsync-Signature"])


def test_sign_is_hex_hmac_sha256() -> None:
    assert sign(b"{}", "key") == "sha256=" + hmac.new(b"key", b"{}", hashlib.sha256).hexdigest()


def test_events_name_the_terminal_statuses() -> None:
    assert dict(EVENTS) == {"succeeded": "job.succeeded", "failed": "job.failed", "canceled": "job.canceled"}


def test_500_then_200_is_delivered_on_attempt_2_with_the_same_delivery_id(receiver: Receiver) -> None:
    receiver.statuses = [500]
    sleeps = Sleeps()

    outcome = send(receiver.url, sleep=sleeps)

    assert outcome == DeliveryOutcome(delivered=True, attempts=2, last_status=200)
    assert sleeps == [2.0]
    first, second = receiver.requests
    assert first.headers["X-Lipsync-Delivery"] == second.headers["X-Lipsync-Delivery"]
    assert first.body == second.body == BODY


def test_five_500s_are_not_delivered_after_exponential_backoff(receiver: Receiver) -> None:
    receiver.statuses = [500] * 5
    sleeps = Sleeps()

    outcome = send(receiver.url, sleep=sleeps)

    assert outcome == DeliveryOutcome(delivered=False, attempts=5, last_status=500)
    assert sleeps == [2.0, 4.0, 8.0, 16.0]  # 30 s of waiting: "within about a minute"
    assert len(receiver.requests) == 5


@pytest.mark.parametrize("status", [408, 429, 503])
def test_retryable_statuses_are_retried(receiver: Receiver, status: int) -> None:
    receiver.statuses = [status]
    assert send(receiver.url) == DeliveryOutcome(delivered=True, attempts=2, last_status=200)


def test_connection_refused_is_retried_then_not_delivered(refusing_port: int) -> None:
    sleeps = Sleeps()

    outcome = send(f"http://127.0.0.1:{refusing_port}/hook", attempts=3, backoff_s=0.5, sleep=sleeps)

    assert outcome == DeliveryOutcome(delivered=False, attempts=3, last_status=None)
    assert sleeps == [0.5, 1.0]


def test_a_timeout_is_retried(receiver: Receiver) -> None:
    receiver.statuses = [STALL]

    outcome = send(receiver.url, timeout_s=0.2)

    assert outcome == DeliveryOutcome(delivered=True, attempts=2, last_status=200)
    assert len(receiver.requests) == 2


def test_logs_name_the_receiver_but_not_the_secret_or_the_path(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [500]
    with caplog.at_level(logging.INFO, logger="service.jobs.webhooks"):
        send(receiver.url)

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert len(caplog.records) == 2
    assert "127.0.0.1" in logged and "HTTP 500" in logged and "delivered on attempt 2" in logged
    assert SECRET not in logged and "token=abc" not in logged and sign(BODY, SECRET) not in logged


@pytest.mark.parametrize("status", [400, 404, 410])
def test_client_errors_are_final_after_one_attempt(receiver: Receiver, status: int) -> None:
    receiver.statuses = [status]
    sleeps = Sleeps()

    assert send(receiver.url, sleep=sleeps) == DeliveryOutcome(delivered=False, attempts=1, last_status=status)
    assert sleeps == []
    assert len(receiver.requests) == 1


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.statuses = [302]

    assert send(receiver.url) == DeliveryOutcome(delivered=False, attempts=1, last_status=302)
    assert [r.path for r in receiver.requests] == ["/hooks/lipsync?token=abc"]  # /elsewhere never asked


def test_a_refused_url_is_not_delivered(receiver: Receiver) -> None:
    dns = FakeDns({"rebind.example.com": ["10.1.2.3"]})

    outcome = send("https://rebind.example.com/hook", resolve=dns)

    assert outcome == DeliveryOutcome(delivered=False, attempts=0, last_status=None)
    assert dns.lookups == ["rebind.example.com"]


def test_the_url_is_rechecked_before_each_attempt(refusing_port: int) -> None:
    """The name is public at the first attempt and re-binds to a private address before the second.
    (The first attempt really goes to localhost, which refuses: this test's fake DNS is not the one the
    HTTP client asks.)"""
    answers = iter([["93.184.215.14"], ["10.1.2.3"]])
    lookups: list[str] = []

    def rebinding(host: str) -> list[str]:
        lookups.append(host)
        return next(answers)

    outcome = send(f"https://localhost:{refusing_port}/hook", allowed_hosts=frozenset(), resolve=rebinding)

    assert outcome == DeliveryOutcome(delivered=False, attempts=1, last_status=None)
    assert lookups == ["localhost", "localhost"]


def test_a_bad_event_is_our_bug(receiver: Receiver) -> None:
    with pytest.raises(ValueError, match="event"):
        deliver(receiver.url, BODY, "succeeded", SECRET, allowed_hosts=LOOPBACK)
    assert receiver.requests == []


# --- SSRF -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.example.com/x", "https"),
        ("ftp://hooks.example.com/x", "https"),
        ("https://127.0.0.1/", "loopback"),
        ("https://localhost/", "loopback"),
        ("https://10.0.0.5/", "private"),
        ("https://192.168.1.1/", "private"),
        ("https://172.16.0.1/", "private"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("https://METADATA.google.internal./", "metadata"),
        ("https://metadata/", "metadata"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://[fd00:ec2::254]/", "private"),
        ("https://[fe80::1]/", "link-local"),
        ("https://[64:ff9b::a9fe:a9fe]/", "link-local"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://100.64.0.1/", "shared"),
        ("https://224.0.0.1/", "multicast"),
        ("https://240.0.0.1/", "private|reserved"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://hooks.example.com@127.0.0.1/", "credentials"),
        ("https://rebind.example.com/hook", "private"),
        ("https://mixed.example.com/hook", "private"),
        ("https://nowhere.invalid/hook", "does not resolve"),
        ("https://empty.example.com/hook", "does not resolve"),
        ("https://2130706433/", "non-standard"),
        ("https:///no-host", "no host"),
        ("https://hooks.example.com:99999/", "not a valid URL"),
        ("https://hooks.example.com\\@127.0.0.1/", "backslash"),
        ("https://hooks.example.com/" + "a" * 2048, "2048"),
        ("", "empty"),
    ],
)
def test_refused_urls(url: str, says: str) -> None:
    with pytest.raises(WebhookNotAllowedError, match=says) as refused:
        check_webhook_url(url, frozenset(), DNS)
    assert refused.value.code == "webhook_not_allowed"
    assert refused.value.http_status == 422


def test_refusal_does_not_reveal_what_an_internal_name_resolves_to() -> None:
    with pytest.raises(WebhookNotAllowedError) as refused:
        check_webhook_url("https://rebind.example.com/hook", frozenset(), DNS)
    assert "10.1.2.3" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/x", frozenset()),
        ("https://93.184.215.14/x", frozenset()),
        ("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/x", frozenset()),
        ("https://[::ffff:93.184.215.14]/x", frozenset()),
        ("http://127.0.0.1:8080/", LOOPBACK),
        ("https://127.0.0.1/", LOOPBACK),
        ("HTTP://LocalHost:8080/hook", frozenset({"localhost"})),
        ("http://[::1]:9000/", frozenset({"[::1]"})),
        ("http://receiver.internal/hook", frozenset({"Receiver.Internal"})),  # listed: not even resolved
    ],
)
def test_accepted_urls(url: str, allowed: frozenset[str]) -> None:
    check_webhook_url(url, allowed, DNS)
