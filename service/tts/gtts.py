"""The customer's engine: Google Translate's speech endpoint, through the gTTS package.

gTTS owns everything about the undocumented endpoint: its path, the RPC body and headers, the
cutting of text into requests of at most 100 characters, the parsing of the answer and the
language table (:func:`gtts.lang.tts_langs`); when Google changes the web API, upgrading gTTS
follows it. This module adds the service's contract around it: language codes as customers send
them, a configurable origin (``TTS_GTTS_URL``), a timeout, MP3 decoded to 16 kHz mono, and one
error for every failure of the web service (DNS, refused, reset, timeout, HTTP 429/5xx or any
non-200, an answer without decodable audio): :class:`TTSUnavailableError`.
"""
from __future__ import annotations

import logging
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import requests
from gtts import gTTS, gTTSError  # type: ignore[import-untyped]  # gTTS ships no type hints
from gtts.lang import tts_langs  # type: ignore[import-untyped]

from service.errors import BadInputError, MediaError
from service.media import read_audio
from service.types import Audio

from .base import TTS_SAMPLE_RATE, match_language, reject_unknown_params
from .errors import TTSUnavailableError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://translate.google.com"  # what gTTS calls with its default tld="com"
# ISO 639 spellings of languages Google lists under other codes (its legacy "iw", "jw"...).
# Regional codes need no entry: match_language falls back to the base language (en-GB -> en).
_ALIASES = {"he": "iw", "nb": "no", "jv": "jw", "fil": "tl", "zh-hans": "zh-cn", "zh-hant": "zh-tw",
            "zh-hk": "yue"}


class _RebasedGTTS(gTTS):
    """gTTS whose requests go to ``base_url`` instead of ``https://translate.google.<tld>``.

    gTTS can only choose a Google host (``tld``), and ``stream()`` sends each request from a
    ``requests.Session`` it creates itself, so there is no session to mount an adapter on and
    no URL option. Its prepared requests are the one seam: only their origin (scheme, host,
    port, and any path prefix of a mirror) is replaced, so gTTS keeps owning the endpoint's
    path, body, headers and answer parsing. Tests point ``base_url`` at a local HTTP server;
    users at a proxy or mirror.
    """

    def __init__(self, text: str, *, base_url: str, **kwargs: Any) -> None:
        super().__init__(text, **kwargs)
        self.base_url = base_url.rstrip("/")

    def _prepare_requests(self) -> list[requests.PreparedRequest]:
        prepared: list[requests.PreparedRequest] = super()._prepare_requests()
        for request in prepared:
            google = urllib.parse.urlsplit(str(request.url))
            tail = google.path + (f"?{google.query}" if google.query else "")
            request.prepare_url(self.base_url + tail, None)
        return prepared


class GTTSEngine:
    """Google's web TTS behind :class:`~service.tts.base.TTSEngine` (needs internet).

    ``base_url`` (scheme + host and optionally a path prefix, e.g. ``http://127.0.0.1:8765`` for
    a fake) and ``timeout_s`` (per request: connect, and each wait for data) are fixed per
    instance. gTTS sends text over 100 characters as several requests; each answer is decoded
    and the audio joined. No retries: a request that is waiting on speech is better served by a
    fast, clear error.
    """

    name = "gtts"

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, timeout_s: float = 10.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._codes = {c.lower(): c for c in tts_langs()}
        self._aliases = {k: v for k, v in _ALIASES.items() if v in self._codes}

    def languages(self) -> set[str]:
        return set(self._codes.values())

    def resolve_language(self, lang: str) -> str:
        return match_language(lang, self.name, self._codes, self._aliases)

    def cache_fields(self, lang: str, **params: Any) -> dict[str, Any]:
        reject_unknown_params(self.name, params, set())
        return {"lang": self.resolve_language(lang)}

    def synthesize(self, text: str, lang: str, **params: Any) -> Audio:
        """Speak ``text`` through the web service; float32 [N] at 16 kHz (MP3 decoded by PyAV)."""
        reject_unknown_params(self.name, params, set())
        code = self.resolve_language(lang)
        # lang_check=False: the code is already one of tts_langs(), and gTTS's check would
        # rewrite some of them ("pt-PT" becomes "pt", with a deprecation warning for "zh-CN")
        speech = _RebasedGTTS(text, base_url=self.base_url, lang=code, lang_check=False, timeout=self.timeout_s)
        # each answer is a whole MP3 file (headers, tags): decoded one by one, not byte-joined
        parts = [self._decode(mp3) for mp3 in self._stream(speech, text)]
        if not parts:  # gTTS found nothing to speak, under ``python -O`` (no assert)
            raise _nothing_to_speak(text)
        audio = parts[0] if len(parts) == 1 else Audio(np.concatenate([p.samples for p in parts]), TTS_SAMPLE_RATE)
        log.debug("gtts %s: %d chars, %d request(s) -> %.2f s", code, len(text), len(parts), audio.duration_s)
        return audio

    def _stream(self, speech: gTTS, text: str) -> list[bytes]:
        """The MP3 of each request gTTS makes for ``text``, failures mapped to our errors."""
        try:
            return list(speech.stream())
        except gTTSError as e:
            raise self._unavailable(e) from e
        except AssertionError as e:  # gTTS's documented signal: only punctuation/space left
            raise _nothing_to_speak(text) from e
        except ValueError as e:  # an answer that is not UTF-8 lines or not base64
            raise TTSUnavailableError(f"{self.base_url} answered with a malformed speech payload ({e})") from e

    def _unavailable(self, e: gTTSError) -> TTSUnavailableError:
        response = e.rsp
        if response is None:  # gTTS raised inside ``except RequestException``: that is the cause
            cause = e.__context__
            if isinstance(cause, requests.RequestException):
                return self._network_error(cause)
            return TTSUnavailableError(f"request to {self.base_url} failed ({e})")
        status = response.status_code
        if status == 200:
            return TTSUnavailableError(f"{self.base_url} answered with an empty or malformed speech payload "
                                       "(Google refuses some text/language pairs; try espeak-ng)")
        hint = " (rate limited; slow down or use espeak-ng)" if status == 429 else ""
        return TTSUnavailableError(f"{self.base_url} answered HTTP {status} {response.reason}{hint}")

    def _network_error(self, e: requests.RequestException) -> TTSUnavailableError:
        # ConnectTimeout is both a Timeout and a ConnectionError: the timeout is the better hint
        if isinstance(e, requests.Timeout):
            return TTSUnavailableError(f"{self.base_url} did not answer within {self.timeout_s:g} s")
        if isinstance(e, requests.ConnectionError):
            return TTSUnavailableError(f"cannot connect to {self.base_url} ({_root_cause(e)})")
        return TTSUnavailableError(f"connection to {self.base_url} failed ({_root_cause(e)})")

    def _decode(self, mp3: bytes) -> Audio:
        if not mp3:
            raise TTSUnavailableError(f"{self.base_url} answered with empty audio")
        with tempfile.TemporaryDirectory(prefix="lipsync-gtts-") as tmp:
            path = Path(tmp) / "speech.mp3"
            path.write_bytes(mp3)
            try:
                return read_audio(path, TTS_SAMPLE_RATE)
            except MediaError as e:
                raise TTSUnavailableError(f"{self.base_url} answered with audio that cannot be decoded ({e})") from e


def _nothing_to_speak(text: str) -> BadInputError:
    return BadInputError(f"gTTS has nothing to speak in {text[:40]!r}: it is only punctuation or spaces; "
                         "add words or use espeak-ng")


def _root_cause(e: BaseException) -> str:
    """The first cause in the chain: the socket's error (``[Errno 111] Connection refused``)
    rather than requests' and urllib3's wrappers around it, which repeat the URL."""
    while (inner := e.__cause__ or e.__context__) is not None:
        e = inner
    return f"{type(e).__name__}: {e}"
