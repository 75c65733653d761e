"""``TextToSpeech``: validated text -> segments -> engines (concurrent, cached) -> one :class:`Audio`."""
from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from service.errors import BadInputError
from service.types import Audio

from .base import TTS_SAMPLE_RATE, TTSEngine
from .cache import DEFAULT_MAX_ENTRIES, DEFAULT_TTL_S, TTSCache
from .engines import DEFAULT_ENGINE, ENGINE_NAMES, make_engine
from .errors import TTSError, UnknownEngineError
from .gtts import DEFAULT_BASE_URL
from .tempo import MAX_SPEED, MIN_SPEED, change_tempo
from .text import DEFAULT_SEGMENT_CHARS, normalize_text, segment_text

log = logging.getLogger(__name__)

DEFAULT_MAX_CHARS = 5000
DEFAULT_MAX_PARALLEL = 4
DEFAULT_PAUSE_S = 0.2  # between sentences: a natural breath, short enough not to stall lip-sync


@dataclass(frozen=True)
class TTSConfig:
    """TTS options; the service builds it from its settings (``TTS_*`` variables).

    ``cache_dir`` None disables the cache. ``max_chars``: longest text accepted, counted after
    whitespace is collapsed. ``segment_chars``: longest unit sent to an engine in one call.
    """

    engine: str = DEFAULT_ENGINE
    cache_dir: Path | None = None
    cache_max_entries: int = DEFAULT_MAX_ENTRIES
    cache_ttl_s: float = DEFAULT_TTL_S
    max_chars: int = DEFAULT_MAX_CHARS
    max_parallel: int = DEFAULT_MAX_PARALLEL
    pause_s: float = DEFAULT_PAUSE_S
    segment_chars: int = DEFAULT_SEGMENT_CHARS
    gtts_base_url: str = DEFAULT_BASE_URL
    gtts_timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: object) -> TTSConfig:
        """Read ``tts_engine``, ``tts_cache_dir``, ``tts_cache_max_entries``, ``tts_cache_ttl_s``,
        ``tts_max_chars``, ``tts_max_parallel``, ``tts_pause_s``, ``tts_segment_chars``,
        ``tts_gtts_url``, ``tts_gtts_timeout_s`` from the settings object; a field it lacks
        keeps this class's default."""
        names = {"engine": "tts_engine", "cache_dir": "tts_cache_dir",
                 "cache_max_entries": "tts_cache_max_entries", "cache_ttl_s": "tts_cache_ttl_s",
                 "max_chars": "tts_max_chars", "max_parallel": "tts_max_parallel",
                 "pause_s": "tts_pause_s", "segment_chars": "tts_segment_chars",
                 "gtts_base_url": "tts_gtts_url", "gtts_timeout_s": "tts_gtts_timeout_s"}
        values = {field: getattr(settings, attr) for field, attr in names.items() if hasattr(settings, attr)}
        if values.get("cache_dir") is not None:
            values["cache_dir"] = Path(values["cache_dir"])
        return cls(**values)


class TextToSpeech:
    """Speech for a text in one language, by a named engine, through the audio cache.

    Text is normalised (NFC, whitespace collapsed), split into sentence segments
    (:func:`~service.tts.text.segment_text`); each segment is synthesized (up to ``max_parallel``
    at once) or taken from the cache, and the segments are joined in order with ``pause_s`` of
    silence. ``speed`` is applied last, to the joined speech (pauses scale with it); it is not
    part of the cache key, so every speed shares the cached audio. Thread-safe; :meth:`close`
    (or ``with``) stops the worker threads.
    """

    def __init__(self, engines: Mapping[str, TTSEngine], *, default_engine: str = DEFAULT_ENGINE,
                 cache: TTSCache | None = None, max_chars: int = DEFAULT_MAX_CHARS,
                 max_parallel: int = DEFAULT_MAX_PARALLEL, pause_s: float = DEFAULT_PAUSE_S,
                 segment_chars: int = DEFAULT_SEGMENT_CHARS) -> None:
        if not engines:
            raise ValueError("TextToSpeech needs at least one engine")
        for label, value in (("max_chars", max_chars), ("max_parallel", max_parallel),
                             ("segment_chars", segment_chars)):
            if value < 1:
                raise ValueError(f"{label} must be at least 1, got {value}")
        if not 0 <= pause_s <= 5:
            raise ValueError(f"pause_s must be within 0..5 s, got {pause_s}")
        self.engines = {name.lower(): engine for name, engine in engines.items()}
        self.default_engine = default_engine.lower()
        self.engine(self.default_engine)  # an unknown default is a configuration error, found now
        self.cache, self.max_chars, self.max_parallel = cache, max_chars, max_parallel
        self.pause_s, self.segment_chars = pause_s, segment_chars
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: object) -> TextToSpeech:
        """:meth:`from_config` with :meth:`TTSConfig.from_settings`."""
        return cls.from_config(TTSConfig.from_settings(settings))

    @classmethod
    def from_config(cls, config: TTSConfig) -> TextToSpeech:
        """Every registered engine, the configured default, and a cache when ``cache_dir`` is set."""
        engines = {name: make_engine(name, gtts_base_url=config.gtts_base_url,
                                     gtts_timeout_s=config.gtts_timeout_s) for name in ENGINE_NAMES}
        cache = (TTSCache(config.cache_dir, config.cache_max_entries, config.cache_ttl_s)
                 if config.cache_dir is not None else None)
        return cls(engines, default_engine=config.engine, cache=cache, max_chars=config.max_chars,
                   max_parallel=config.max_parallel, pause_s=config.pause_s,
                   segment_chars=config.segment_chars)

    def engine(self, name: str | None = None) -> TTSEngine:
        """The engine called ``name`` (default: the configured one); bad input if unknown."""
        key = (name or self.default_engine).strip().lower()
        if key not in self.engines:
            raise UnknownEngineError(name or self.default_engine, self.engines)
        return self.engines[key]

    def languages(self, engine: str | None = None) -> set[str]:
        """The language codes ``engine`` accepts."""
        return self.engine(engine).languages()

    def supported_languages(self) -> dict[str, list[str]]:
        """{engine name: its sorted language codes}, for health pages and error messages."""
        return {name: sorted(engine.languages()) for name, engine in self.engines.items()}

    def synthesize_speech(self, text: str, lang: str, engine: str | None = None, speed: float = 1.0, *,
                          use_cache: bool = True, **params: Any) -> tuple[Audio, bool]:
        """Speak ``text`` in ``lang``: (mono float32 audio at 16 kHz, whether every segment came
        from the cache). ``params`` go to the engine (espeak-ng: ``rate_wpm``, ``pitch``);
        ``use_cache=False`` neither reads nor writes the cache (the baseline pipeline).

        Raises :class:`BadInputError` (empty or too long text, speed out of
        [0.5, 4], unknown engine, unsupported language, unknown parameter) before any synthesis,
        :class:`TTSUnavailableError` when the online engine cannot be reached, :class:`TTSError`
        when an engine fails.
        """
        t0 = time.perf_counter()
        eng = self.engine(engine)
        clean = self._validate_text(text)
        speed = _validate_speed(speed)
        code = eng.resolve_language(lang)
        fields = {"engine": eng.name, "sample_rate": TTS_SAMPLE_RATE, **eng.cache_fields(code, **params)}
        segments = segment_text(clean, self.segment_chars)
        if len(segments) == 1:
            results = [self._segment(eng, segments[0], code, params, fields, use_cache)]
        else:
            pool = self._executor()
            results = list(pool.map(lambda s: self._segment(eng, s, code, params, fields, use_cache), segments))
        audio = change_tempo(self._join([a for a, _ in results]), speed)
        hits = sum(hit for _, hit in results)
        log.info("tts %s/%s: %d chars, %d segment(s), %d cached, %.2f s of speech in %.3f s",
                 eng.name, code, len(clean), len(segments), hits, audio.duration_s, time.perf_counter() - t0)
        return audio, hits == len(results)

    async def asynthesize_speech(self, text: str, lang: str, engine: str | None = None, speed: float = 1.0, *,
                                 use_cache: bool = True, **params: Any) -> tuple[Audio, bool]:
        """:meth:`synthesize_speech` in a worker thread, so the event loop never waits on it."""
        return await asyncio.to_thread(self.synthesize_speech, text, lang, engine, speed,
                                       use_cache=use_cache, **params)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _validate_text(self, text: str) -> str:
        if not isinstance(text, str):
            raise BadInputError(f"text must be a string, got {type(text).__name__}")
        clean = normalize_text(text)
        if not clean:
            raise BadInputError("text is empty (or only whitespace); give a word or sentence to speak")
        if len(clean) > self.max_chars:
            raise BadInputError(f"text is {len(clean)} characters long, over the limit of {self.max_chars}; "
                                "shorten it or send it in several requests")
        return clean

    def _segment(self, eng: TTSEngine, text: str, code: str, params: Mapping[str, Any],
                 fields: Mapping[str, Any], use_cache: bool) -> tuple[Audio, bool]:
        def create() -> Audio:
            audio = eng.synthesize(text, code, **params)
            if audio.sample_rate != TTS_SAMPLE_RATE or audio.samples.dtype != np.float32:
                raise TTSError(f"engine {eng.name} returned {audio.samples.dtype} audio at "
                               f"{audio.sample_rate} Hz; expected float32 at {TTS_SAMPLE_RATE} Hz")
            return audio

        if self.cache is None or not use_cache:
            return create(), False
        return self.cache.get_or_create({**fields, "text": text}, create)

    def _join(self, parts: list[Audio]) -> Audio:
        if len(parts) == 1:
            return parts[0]
        gap = np.zeros(round(self.pause_s * TTS_SAMPLE_RATE), np.float32)
        pieces: list[np.ndarray] = []
        for i, part in enumerate(parts):
            if i:
                pieces.append(gap)
            pieces.append(part.samples)
        return Audio(np.concatenate(pieces), TTS_SAMPLE_RATE)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_parallel, thread_name_prefix=f"tts-{os.getpid()}")
            return self._pool


def _validate_speed(speed: Any) -> float:
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not math.isfinite(speed) \
            or not MIN_SPEED <= speed <= MAX_SPEED:
        raise BadInputError(f"speed must be a number within {MIN_SPEED}..{MAX_SPEED} (1.0 = normal), "
                            f"got {speed!r}")
    return float(speed)
