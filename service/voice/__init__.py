"""Voice conversion: the TTS speech spoken again in the user's own voice with FreeVC.

``VoiceConverter(bundle).convert_voice(source, target_reference)`` follows the official
``convert.py`` (DESIGN §4); the signal helpers it needs are pure numpy/torch functions here, so
librosa is not a dependency: :func:`trim_silence` (= ``librosa.effects.trim``) and
:func:`resample` (polyphase Kaiser-windowed sinc).
"""
from .cache import CacheInfo, EmbeddingCache
from .converter import CHUNK_S, MAX_SOURCE_S, NOISE_SCALE, OVERLAP_S, VoiceConverter
from .inputs import MIN_REFERENCE_S, SILENCE_DBFS
from .resample import resample
from .trim import peak_rms_dbfs, trim_bounds, trim_silence

__all__ = [
    "CHUNK_S",
    "MAX_SOURCE_S",
    "MIN_REFERENCE_S",
    "NOISE_SCALE",
    "OVERLAP_S",
    "SILENCE_DBFS",
    "CacheInfo",
    "EmbeddingCache",
    "VoiceConverter",
    "peak_rms_dbfs",
    "resample",
    "trim_bounds",
    "trim_silence",
]
