"""The engine registry: names customers and settings use -> engine instances."""
from __future__ import annotations

from .base import TTSEngine
from .errors import UnknownEngineError
from .espeak import EspeakEngine
from .gtts import DEFAULT_BASE_URL, GTTSEngine

ENGINE_NAMES = ("espeak-ng", "gtts")
DEFAULT_ENGINE = "espeak-ng"  # offline: works without internet and without the customer's quota


def make_engine(name: str, *, gtts_base_url: str = DEFAULT_BASE_URL, gtts_timeout_s: float = 10.0,
                espeak_binary: str = "espeak-ng") -> TTSEngine:
    """A new engine called ``name`` (case-insensitive); :class:`UnknownEngineError` lists the names.

    Constructing an engine touches neither the network nor a subprocess; espeak-ng lists its
    voices on first use.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "espeak-ng":
        return EspeakEngine(espeak_binary)
    if key == "gtts":
        return GTTSEngine(gtts_base_url, timeout_s=gtts_timeout_s)
    raise UnknownEngineError(str(name), ENGINE_NAMES)
