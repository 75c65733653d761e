"""Text-to-speech: engines (espeak-ng offline, gTTS online) behind one interface, a persistent
audio cache, sentence segmentation with concurrent synthesis, and a pitch-keeping speed change.

Typical use::

    tts = TextToSpeech.from_config(TTSConfig(cache_dir=Path("cache/tts")))
    audio, cache_hit = tts.synthesize_speech("안녕하세요", "ko", engine="espeak-ng", speed=1.0)
    # audio: Audio, float32 [N] at 16 kHz
"""
from __future__ import annotations

from .base import TTS_SAMPLE_RATE, TTSEngine
from .cache import TTSCache, cache_key
from .engines import DEFAULT_ENGINE, ENGINE_NAMES, make_engine
from .errors import TTSError, TTSUnavailableError, UnknownEngineError, UnsupportedLanguageError
from .espeak import EspeakEngine
from .gtts import GTTSEngine
from .speech import TextToSpeech, TTSConfig
from .tempo import change_tempo
from .text import normalize_text, segment_text, split_long, split_sentences
from .wavfile import write_wav

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINE_NAMES",
    "TTS_SAMPLE_RATE",
    "EspeakEngine",
    "GTTSEngine",
    "TTSCache",
    "TTSConfig",
    "TTSEngine",
    "TTSError",
    "TTSUnavailableError",
    "TextToSpeech",
    "UnknownEngineError",
    "UnsupportedLanguageError",
    "cache_key",
    "change_tempo",
    "make_engine",
    "normalize_text",
    "segment_text",
    "split_long",
    "split_sentences",
    "write_wav",
]
