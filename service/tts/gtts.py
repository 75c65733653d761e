"""The customer's engine: Google Translate's speech endpoint, as the gTTS package calls it.

The request is made here with :mod:`urllib` (no ``requests``/gTTS dependency) so that the base URL
is a plain constructor argument: tests point it at a local HTTP fake, never at Google. Facts
from gTTS 2.5 (pndurette/gTTS): ``POST {base}/_/TranslateWebserverUi/data/batchexecute``, a form
field ``f.req`` holding the JSON RPC ``[[["jQ1olc", "[text, lang, null, \\"null\\"]", null,
"generic"]]]``; the answer's ``["wrb.fr", "jQ1olc", "[\\"<base64 mp3>\\"]", ...]`` envelope
carries the MP3; at most 100 characters per request.

Every failure of the web service (DNS, refused, reset, timeout, HTTP 429/5xx or any non-200,
an answer without decodable audio) raises :class:`TTSUnavailableError`.
"""
from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import MediaError
from service.media import read_audio
from service.types import Audio

from .base import TTS_SAMPLE_RATE, match_language, reject_unknown_params
from .errors import TTSUnavailableError
from .text import split_long

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://translate.google.com"
ENDPOINT_PATH = "/_/TranslateWebserverUi/data/batchexecute"
RPC_ID = "jQ1olc"
MAX_CHARS_PER_REQUEST = 100  # the endpoint refuses longer text (gTTS's GOOGLE_TTS_MAX_CHARS)
_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded;charset=utf-8",
    "Referer": "https://translate.google.com/",
    "User-Agent": "Mozilla/5.0 (lipsync-service)",
}

# gTTS 2.5's language table (gtts/langs.py plus its extra "zh" and "zh-TW"), canonical spelling.
GTTS_LANGUAGES = (
    "af am ar bg bn bs ca cs cy da de el en es et eu fi fr fr-CA gl gu ha hi hr hu id is it iw ja "
    "jw km kn ko la lt lv ml mr ms my ne nl no pa pl pt pt-PT ro ru si sk sq sr su sv sw ta te th "
    "tl tr uk ur vi yue zh zh-CN zh-TW").split()
# Codes gTTS maps onto a supported one (its deprecated-language fallbacks), plus ISO spellings.
_ALIASES = {"en-us": "en", "en-gb": "en", "en-uk": "en", "en-au": "en", "en-ca": "en", "en-in": "en",
            "fr-fr": "fr", "pt-br": "pt", "es-es": "es", "es-us": "es", "es-mx": "es", "he": "iw",
            "nb": "no", "jv": "jw", "fil": "tl", "zh-hans": "zh-cn", "zh-hant": "zh-tw", "zh-hk": "yue"}


class GTTSEngine:
    """Google's web TTS behind :class:`~service.tts.base.TTSEngine` (needs internet).

    ``base_url`` (scheme + host, e.g. ``http://127.0.0.1:8765`` for a fake) and ``timeout_s``
    (per request: connect and each read) are fixed per instance. Text over 100 characters goes
    out as several requests, cut at clause marks or spaces, and the decoded audio is joined.
    No retries: a request that is waiting on speech is better served by a fast, clear error.
    """

    name = "gtts"

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, timeout_s: float = 10.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.url = base_url.rstrip("/") + ENDPOINT_PATH
        self.timeout_s = timeout_s
        self._codes = {c.lower(): c for c in GTTS_LANGUAGES}

    def languages(self) -> set[str]:
        return set(GTTS_LANGUAGES)

    def resolve_language(self, lang: str) -> str:
        return match_language(lang, self.name, self._codes, _ALIASES)

    def cache_fields(self, lang: str, **params: Any) -> dict[str, Any]:
        reject_unknown_params(self.name, params, set())
        return {"lang": self.resolve_language(lang)}

    def synthesize(self, text: str, lang: str, **params: Any) -> Audio:
        """Speak ``text`` through the web service; float32 [N] at 16 kHz (MP3 decoded by PyAV)."""
        reject_unknown_params(self.name, params, set())
        code = self.resolve_language(lang)
        parts = [self._decode(self._request(chunk, code)) for chunk in split_long(text, MAX_CHARS_PER_REQUEST)]
        # each answer is a whole MP3 file (headers, tags): decoded one by one, not byte-joined
        audio = parts[0] if len(parts) == 1 else Audio(np.concatenate([p.samples for p in parts]), TTS_SAMPLE_RATE)
        log.debug("gtts %s: %d chars -> %.2f s", code, len(text), audio.duration_s)
        return audio

    def _decode(self, mp3: bytes) -> Audio:
        with tempfile.TemporaryDirectory(prefix="lipsync-gtts-") as tmp:
            path = Path(tmp) / "speech.mp3"
            path.write_bytes(mp3)
            try:
                return read_audio(path, TTS_SAMPLE_RATE)
            except MediaError as e:
                raise TTSUnavailableError(f"{self.url} answered with audio that cannot be decoded ({e})") from e

    def _request(self, text: str, lang: str) -> bytes:
        """One RPC: the MP3 bytes for ``text`` (at most 100 characters)."""
        inner = json.dumps([text, lang, None, "null"], separators=(",", ":"))
        rpc = json.dumps([[[RPC_ID, inner, None, "generic"]]], separators=(",", ":"))
        body = urllib.parse.urlencode({"f.req": rpc}).encode("ascii")
        request = urllib.request.Request(self.url, data=body, headers=_HEADERS, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = response.read()
        except urllib.error.HTTPError as e:
            hint = " (rate limited; slow down or use espeak-ng)" if e.code == 429 else ""
            raise TTSUnavailableError(f"{self.url} answered HTTP {e.code} {e.reason}{hint}") from e
        except TimeoutError as e:
            raise TTSUnavailableError(f"{self.url} did not answer within {self.timeout_s:g} s") from e
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise TTSUnavailableError(f"{self.url} did not answer within {self.timeout_s:g} s") from e
            raise TTSUnavailableError(f"cannot connect to {self.url} ({reason})") from e
        except (OSError, ValueError, http.client.HTTPException) as e:  # reset or cut mid-answer
            raise TTSUnavailableError(f"connection to {self.url} failed ({type(e).__name__}: {e})") from e
        return self._audio_from_answer(answer)

    def _audio_from_answer(self, answer: bytes) -> bytes:
        """The MP3 bytes in a batchexecute answer: lines of JSON arrays after a ``)]}'`` guard."""
        for line in answer.decode("utf-8", "replace").splitlines():
            if RPC_ID not in line or not line.lstrip().startswith("["):
                continue
            try:
                envelopes = json.loads(line)
            except json.JSONDecodeError:
                continue
            for env in envelopes if isinstance(envelopes, list) else []:
                if isinstance(env, list) and len(env) > 2 and env[:2] == ["wrb.fr", RPC_ID]:
                    return self._decode_payload(env[2])
        raise TTSUnavailableError(f"{self.url} answered without a speech payload "
                                  f"({len(answer)} bytes; the web API may have changed)")

    def _decode_payload(self, payload: Any) -> bytes:
        try:
            data = json.loads(payload)
            mp3 = base64.b64decode(data[0], validate=True)
        except (TypeError, ValueError, IndexError, KeyError, binascii.Error) as e:
            raise TTSUnavailableError(f"{self.url} answered with an empty or malformed speech payload "
                                      "(Google refuses some text/language pairs; try espeak-ng)") from e
        if not mp3:
            raise TTSUnavailableError(f"{self.url} answered with empty audio")
        return mp3
