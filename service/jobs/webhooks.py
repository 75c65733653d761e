"""Job webhooks: refuse URLs that could reach inside our network, sign and deliver with retries.

On a job's terminal status the runner POSTs the job record to the caller's ``webhook_url``:

* ``X-Lipsync-Event``: ``job.succeeded`` | ``job.failed`` | ``job.canceled`` (:data:`EVENTS`);
* ``X-Lipsync-Delivery``: one uuid4 per delivery, the same on every attempt (receivers dedupe on it);
* ``X-Lipsync-Signature``: ``sha256=<hex HMAC-SHA256 of the raw body keyed with WEBHOOK_SECRET>``.

A receiver verifies with ``hmac.compare_digest(sign(raw_body, secret), header)``.

SSRF: :func:`check_webhook_url` runs when the job is submitted (422 ``webhook_not_allowed``) and again
right before every attempt, because DNS may change in between. ``WEBHOOK_ALLOWED_HOSTS`` lists hosts the
operator trusts (e.g. a receiver inside the cluster): they may use plain http and skip the address check.
The check cannot pin the address the HTTP client then connects to; an egress firewall remains the
stronger guard against a name that re-binds in the milliseconds between the check and the connect.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

import requests

from service.errors import WebhookNotAllowedError

log = logging.getLogger(__name__)

Resolver = Callable[[str], list[str]]
"""host name -> the IP address strings it resolves to; raises OSError when it does not resolve."""

EVENTS: Final[Mapping[str, str]] = MappingProxyType(
    {"succeeded": "job.succeeded", "failed": "job.failed", "canceled": "job.canceled"}
)
"""Terminal job status -> the ``X-Lipsync-Event`` header value."""

MAX_URL_LENGTH = 2048
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata"})
RETRIED_STATUSES = frozenset({408, 429})  # plus every 5xx
USER_AGENT = "lipsync-service-webhooks/1"

_ALLOWED_HINT = "or ask the operator to list the host in WEBHOOK_ALLOWED_HOSTS"
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
# Forms getaddrinfo still reads as IPv4 (127.1, 0x7f000001, 2130706433): no real TLD looks like this.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT; also Alibaba's metadata address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def default_resolver(host: str) -> list[str]:
    """Every address ``host`` resolves to, IPv4 and IPv6 (blocking: call it off the event loop)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]


def check_webhook_url(url: str, allowed_hosts: frozenset[str], resolve: Resolver = default_resolver) -> None:
    """Raise WebhookNotAllowedError (message says what is wrong and what to do) unless url may be called.

    Allowed: scheme https (or http/https for a host in ``allowed_hosts``), a host, no userinfo
    (``user:pass@``), at most :data:`MAX_URL_LENGTH` characters, and, unless the host (case-insensitive,
    without port) is in ``allowed_hosts``, every address the host resolves to is public: not loopback,
    private (RFC 1918, fc00::/7), link-local (169.254/16 with the cloud metadata 169.254.169.254,
    fe80::/10), unspecified, multicast, reserved, shared (100.64/10), nor IPv4-mapped, NAT64 or 6to4
    forms of those; nor a metadata host name (:data:`METADATA_HOSTS`). An IP-literal host is checked
    the same way. A host that does not resolve is refused too. ``resolve`` is called at most once.
    """
    if not isinstance(url, str) or not url:
        raise WebhookNotAllowedError("webhook_url is empty; give an https:// URL of your receiver")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookNotAllowedError(
            f"webhook_url is {len(url)} characters long; the limit is {MAX_URL_LENGTH}, use a shorter URL"
        )
    if _UNSAFE_CHARS.search(url):
        raise WebhookNotAllowedError(
            "webhook_url contains whitespace, control characters or a backslash; percent-encode them"
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError when the port is not a number in range
    except ValueError as e:
        raise WebhookNotAllowedError(f"webhook_url is not a valid URL ({e}); give an https:// URL") from e
    if "@" in parts.netloc:
        raise WebhookNotAllowedError(
            "webhook_url must not carry credentials (user:password@host); put a token in the path or "
            "verify the X-Lipsync-Signature header instead"
        )
    raw_host = parts.hostname or ""  # lower case, without brackets or port, as the HTTP client will look it up
    host = _normalize_host(raw_host)
    if not host:
        raise WebhookNotAllowedError(
            "webhook_url has no host; give a full URL such as https://hooks.example.com/lipsync"
        )
    listed = host in {_normalize_host(h) for h in allowed_hosts}
    scheme = parts.scheme.lower()
    if scheme != "https" and not (listed and scheme == "http"):
        raise WebhookNotAllowedError(
            f"webhook_url must use https, not {scheme or 'no scheme'}:// (plain http only to hosts listed "
            "in WEBHOOK_ALLOWED_HOSTS)"
        )
    if listed:
        return
    literal = _parse_ip(host)
    if literal is not None:
        reason = _non_public_reason(literal)
        if reason:
            raise WebhookNotAllowedError(
                f"webhook_url host {host} is a {reason} address; use a publicly reachable host, {_ALLOWED_HINT}"
            )
        return
    _check_host_name(host)
    try:
        addresses = resolve(raw_host)
    except (OSError, UnicodeError) as e:
        raise WebhookNotAllowedError(
            f"webhook_url host {host!r} does not resolve; check the host name"
        ) from e
    if not addresses:
        raise WebhookNotAllowedError(f"webhook_url host {host!r} does not resolve; check the host name")
    for address in addresses:
        ip = _parse_ip(address)
        # The address itself is not echoed: it would turn this check into a probe of our internal DNS.
        reason = "unparseable" if ip is None else _non_public_reason(ip)
        if reason:
            raise WebhookNotAllowedError(
                f"webhook_url host {host!r} resolves to a {reason} address; webhooks only go to public "
                f"addresses: use a publicly reachable host, {_ALLOWED_HINT}"
            )


def sign(body: bytes, secret: str) -> str:
    """``"sha256=" + hex HMAC-SHA256(secret, body)``: the X-Lipsync-Signature of ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeliveryOutcome:
    """What happened to one delivery; the runner records it in the job.

    ``attempts`` counts the HTTP requests sent (0 when the URL was refused before the first);
    ``last_status`` is the HTTP status of the last attempt, None if it never got an answer.
    """

    delivered: bool
    attempts: int
    last_status: int | None


def deliver(
    url: str,
    body: bytes,
    event: str,
    secret: str,
    *,
    allowed_hosts: frozenset[str] = frozenset(),
    attempts: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 10.0,
    resolve: Resolver = default_resolver,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryOutcome:
    """POST ``body`` (Content-Type application/json) to ``url`` with the three X-Lipsync-* headers.

    The delivery id is one uuid4 for all attempts. The URL is re-checked with :func:`check_webhook_url`
    right before each attempt; once refused nothing more is sent. Redirects are never followed (a 3xx is
    a final non-delivery: it could point at an internal host). 2xx = delivered. Connection errors,
    timeouts, 408, 429 and 5xx are retried after ``backoff_s``, 2x, 4x, ... seconds (defaults: 2+4+8+16
    = 30 s of waiting over 5 attempts); other statuses are final. ``timeout_s`` bounds the connect and
    the wait for the response headers of each attempt; the response body is never read.

    Never raises for delivery failures (a bad ``event`` or ``attempts`` is a ValueError: our bug).
    Logs each attempt, naming the target by scheme, host and port only (paths often hold tokens),
    never the secret.
    """
    if event not in EVENTS.values():
        raise ValueError(f"event must be one of {sorted(EVENTS.values())}, not {event!r}")
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    delivery_id = str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Lipsync-Event": event,
        "X-Lipsync-Delivery": delivery_id,
        "X-Lipsync-Signature": sign(body, secret),
    }
    target = _log_target(url)
    sent = 0
    last_status: int | None = None
    with requests.Session() as session:
        session.trust_env = False  # no proxies from the environment, and no ~/.netrc credentials sent out
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                sleep(backoff_s * 2 ** (attempt - 2))
            try:
                check_webhook_url(url, allowed_hosts, resolve)
            except WebhookNotAllowedError as e:
                log.warning("webhook %s %s to %s refused before attempt %d: %s",
                            event, delivery_id, target, attempt, e)
                return DeliveryOutcome(delivered=False, attempts=sent, last_status=last_status)
            sent = attempt
            started = time.monotonic()
            try:
                with session.post(url, data=body, headers=headers, timeout=timeout_s,
                                  allow_redirects=False, stream=True) as response:
                    last_status = response.status_code
            except (requests.ConnectionError, requests.Timeout) as e:
                last_status = None
                retry = attempt < attempts
                log.warning("webhook %s %s to %s attempt %d/%d: %s after %.0f ms%s", event, delivery_id, target,
                            attempt, attempts, type(e).__name__, _ms_since(started), ", retrying" if retry else "")
                continue
            except requests.RequestException as e:
                log.warning("webhook %s %s to %s attempt %d/%d: %s, not retried", event, delivery_id, target,
                            attempt, attempts, type(e).__name__)
                return DeliveryOutcome(delivered=False, attempts=sent, last_status=None)
            if 200 <= last_status < 300:
                log.info("webhook %s %s to %s delivered on attempt %d/%d: HTTP %d in %.0f ms", event, delivery_id,
                         target, attempt, attempts, last_status, _ms_since(started))
                return DeliveryOutcome(delivered=True, attempts=sent, last_status=last_status)
            if not _is_retried(last_status):
                log.warning("webhook %s %s to %s attempt %d/%d: HTTP %d, final%s", event, delivery_id, target,
                            attempt, attempts, last_status,
                            " (redirects are not followed)" if 300 <= last_status < 400 else "")
                return DeliveryOutcome(delivered=False, attempts=sent, last_status=last_status)
            log.warning("webhook %s %s to %s attempt %d/%d: HTTP %d%s", event, delivery_id, target,
                        attempt, attempts, last_status, ", retrying" if attempt < attempts else "")
    log.warning("webhook %s %s to %s not delivered after %d attempts", event, delivery_id, target, sent)
    return DeliveryOutcome(delivered=False, attempts=sent, last_status=last_status)


def _is_retried(status: int) -> bool:
    return status >= 500 or status in RETRIED_STATUSES


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _log_target(url: str) -> str:
    """``scheme://host:port`` of ``url``: enough to tell receivers apart, without tokens in path or query."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<unparseable url>"


def _normalize_host(host: str) -> str:
    """Lower case, no brackets, no trailing dot, IP addresses in their canonical form."""
    host = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    ip = _parse_ip(host)
    return str(ip) if ip is not None else host


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _check_host_name(host: str) -> None:
    if host in METADATA_HOSTS:
        raise WebhookNotAllowedError(f"webhook_url host {host!r} is a cloud metadata service; use your own receiver")
    if not host.isascii():
        raise WebhookNotAllowedError(
            f"webhook_url host {host!r} is not ASCII; give an internationalized name in its xn-- (punycode) form"
        )
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise WebhookNotAllowedError(f"webhook_url host {host!r} is not a valid host name")
    if _NUMERIC_LABEL.match(labels[-1]):
        raise WebhookNotAllowedError(
            f"webhook_url host {host!r} looks like an IP address in a non-standard form; "
            "write IPv4 addresses as four decimal numbers (a.b.c.d)"
        )


def _non_public_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` may not be called (e.g. "loopback"), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = _non_public_reason(embedded)
            return f"{reason} (IPv4 inside IPv6)" if reason else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)" if str(ip) == "169.254.169.254" else "link-local"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared (100.64.0.0/10)"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "non-global"
    return None
