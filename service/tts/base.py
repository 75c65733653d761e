"""The engine interface every TTS backend implements, and the language-code matching they share."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from service.errors import BadInputError
from service.types import Audio

from .errors import UnsupportedLanguageError

TTS_SAMPLE_RATE = 16000  # what FreeVC's WavLM and Wav2Lip's mel read; every engine returns this


@runtime_checkable
class TTSEngine(Protocol):
    """A speech synthesizer: text in one language -> :class:`Audio` at :data:`TTS_SAMPLE_RATE`.

    Engines are thread-safe: the service calls :meth:`synthesize` from several threads at once.
    """

    name: str

    def languages(self) -> set[str]:
        """The language codes this engine accepts, as customers send them (``ko``, ``zh-CN``...)."""
        ...

    def resolve_language(self, lang: str) -> str:
        """The engine's canonical code for ``lang``; :class:`UnsupportedLanguageError` if none."""
        ...

    def cache_fields(self, lang: str, **params: Any) -> dict[str, Any]:
        """Everything besides the text that changes this engine's audio, defaults filled in.

        The cache hashes these, so two calls that would give the same audio share one entry and
        two that would not never do.
        """
        ...

    def synthesize(self, text: str, lang: str, **params: Any) -> Audio:
        """Speak ``text`` (non-empty, already validated) in ``lang``: mono float32, 16 kHz."""
        ...


def match_language(lang: str, engine: str, supported: Mapping[str, str],
                   aliases: Mapping[str, str] | None = None, *, base_fallback: bool = True) -> str:
    """Map a customer's language code onto one of an engine's codes.

    ``supported`` maps lower-case codes to the engine's canonical spelling. Matching ignores
    case and accepts ``_`` for ``-`` (``zh_CN`` = ``zh-CN``); ``aliases`` (lower-case) come next;
    then, with ``base_fallback``, a regional code the engine lacks falls back to its base
    language (``en-AU`` -> ``en``). Anything else raises :class:`UnsupportedLanguageError`
    listing ``supported``'s canonical codes.
    """
    if not isinstance(lang, str) or not lang.strip():
        raise BadInputError(f"a language code is required (e.g. 'en', 'ko'); got {lang!r}")
    key = lang.strip().replace("_", "-").lower()
    if key in supported:
        return supported[key]
    if aliases and key in aliases:
        return supported[aliases[key]]
    base = key.split("-", 1)[0]
    if base_fallback and base != key and base in supported:
        return supported[base]
    raise UnsupportedLanguageError(lang, engine, supported.values())


def reject_unknown_params(engine: str, params: Mapping[str, Any], known: set[str]) -> None:
    """Engine parameters are a closed set: a typo must not silently change nothing."""
    unknown = set(params) - known
    if unknown:
        raise BadInputError(f"TTS engine {engine!r} has no parameter(s) {sorted(unknown)}; "
                            f"it accepts {sorted(known) or 'none'}")
