"""The TTS layer's errors, placed in the service's exception tree (:mod:`service.errors`).

- :class:`TTSError`: an engine failed for a reason on our side (a crash, a missing binary):
  the CLI exits 1, the API answers 5xx.
- :class:`TTSUnavailableError`: a network engine (gTTS) could not be reached or gave no usable
  audio (DNS, refused, timeout, HTTP 429/5xx...). Not the caller's fault: retry later or use the
  offline engine. The API maps it to 503.
- :class:`UnsupportedLanguageError` / :class:`UnknownEngineError`: bad input (exit 2, HTTP 422);
  their messages list what *is* supported.
"""
from __future__ import annotations

from collections.abc import Iterable

from service.errors import BadInputError, ServiceError, UnavailableError


class TTSError(ServiceError):
    """A TTS engine failed (not because of the caller's input): ``internal_error``, 500."""


class TTSUnavailableError(TTSError, UnavailableError):
    """The online TTS service is unreachable or answered without usable audio."""

    code = "tts_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"TTS service unreachable: {detail}")
        self.detail = detail


class UnsupportedLanguageError(BadInputError):
    """The engine has no voice for the requested language code."""

    def __init__(self, lang: str, engine: str, supported: Iterable[str]) -> None:
        codes = sorted(supported)
        super().__init__(f"language {lang!r} is not supported by TTS engine {engine!r}; "
                         f"supported codes: {', '.join(codes)}")
        self.lang, self.engine, self.supported = lang, engine, codes


class UnknownEngineError(BadInputError):
    """No TTS engine of that name."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        names = sorted(known)
        super().__init__(f"unknown TTS engine {name!r}; choose one of: {', '.join(names)}")
        self.name, self.known = name, names
