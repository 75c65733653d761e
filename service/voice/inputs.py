"""Checks of the two audio inputs of a conversion, with messages a user can act on."""
from __future__ import annotations

import numpy as np

from service.errors import BadInputError
from service.types import Audio

from .trim import peak_rms_dbfs, trim_silence

SAMPLE_RATE = 16000          # WavLM, the speaker encoders and the freevc-s mel all read 16 kHz
MIN_SOURCE_SAMPLES = 400     # one WavLM frame (25 ms); shorter audio has no content at all
SILENCE_DBFS = -60.0         # a reference whose loudest 128 ms frame is below this holds no voice
MIN_REFERENCE_S = 1.0        # speech left after trimming; the speaker encoders see 1.6 s partials


def check_source(source: Audio, max_seconds: float) -> np.ndarray:
    """The speech to convert: 16 kHz, 400 samples to ``max_seconds`` long, finite -> samples [N].

    A wrong rate is a programming error (``ValueError`` from :meth:`Audio.expect_rate`); the
    rest is the caller's input (:class:`BadInputError`).
    """
    source.expect_rate(SAMPLE_RATE, "voice conversion (source speech)")
    x = source.samples
    if x.shape[0] == 0:
        raise BadInputError("the source speech is empty (0 samples); nothing to convert")
    if x.shape[0] < MIN_SOURCE_SAMPLES:
        raise BadInputError(f"the source speech is {x.shape[0]} samples ({1000 * source.duration_s:.1f} ms) "
                            f"long; voice conversion needs at least {MIN_SOURCE_SAMPLES} samples "
                            f"({1000 * MIN_SOURCE_SAMPLES / SAMPLE_RATE:.0f} ms)")
    if source.duration_s > max_seconds:
        raise BadInputError(f"the source speech is {source.duration_s:.1f} s long; the limit is "
                            f"{max_seconds:g} s (max_source_s): split the text or raise the limit")
    if not np.all(np.isfinite(x)):
        raise BadInputError("the source speech contains NaN or infinite samples")
    return x


def prepare_reference(reference: Audio, top_db: float, min_speech_s: float = MIN_REFERENCE_S) -> np.ndarray:
    """The target speaker's audio, trimmed as FreeVC does: 16 kHz samples [M] of speech.

    Raises :class:`BadInputError` when the audio is empty, silent (loudest frame below
    ``SILENCE_DBFS``), or holds less than ``min_speech_s`` seconds after trimming leading and
    trailing silence at ``top_db``.
    """
    reference.expect_rate(SAMPLE_RATE, "voice conversion (target speaker reference)")
    x = reference.samples
    if x.shape[0] == 0:
        raise BadInputError("the target speaker's reference audio is empty (0 samples); "
                            "give a recording (or video) with the speaker's voice")
    if not np.all(np.isfinite(x)):
        raise BadInputError("the target speaker's reference audio contains NaN or infinite samples")
    level = peak_rms_dbfs(x)
    if level < SILENCE_DBFS:
        shown = "digital silence" if level == float("-inf") else f"{level:.0f} dBFS"
        raise BadInputError(f"the target speaker's reference audio is silent (loudest passage: {shown}, "
                            f"below {SILENCE_DBFS:.0f} dBFS); give a recording in which the speaker talks")
    trimmed = trim_silence(x, top_db)
    seconds = trimmed.shape[0] / SAMPLE_RATE
    if seconds < min_speech_s:
        raise BadInputError(f"the target speaker's reference has only {seconds:.2f} s of speech after "
                            f"trimming silence ({reference.duration_s:.2f} s in total); at least "
                            f"{min_speech_s:g} s is needed for a speaker embedding")
    return trimmed
