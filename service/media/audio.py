"""``read_audio``: the first audio track of an audio file or a video, as mono float32 at a given rate."""
from __future__ import annotations

import logging

import av
import numpy as np

from service.errors import MediaError
from service.types import Audio

from .containers import AUDIO_FORMATS, PathLike, audio_format, describe_error, open_input

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 16000  # Wav2Lip's mel, WavLM and the speaker encoder all read 16 kHz


def read_audio(path: PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Audio:
    """Decode the first audio stream of ``path`` to mono: a wav, mp3, flac, ogg or m4a file, or
    an mp4/mov, webm/mkv or avi video, recognised by content (a file's name is never trusted).

    Returns :class:`Audio` with float32 samples [N] at ``sample_rate`` Hz, as ``librosa.load(path,
    sr=sample_rate)`` would give them: PCM16 becomes exactly ``int16 / 32768``, and channels are
    *averaged* (FFmpeg's own mono downmix sums them at -3 dB, which can clip a loud stereo
    track). Resampling is FFmpeg's swresample (not librosa's soxr, so resampled values differ
    slightly); N is exactly ``round(decoded_samples * sample_rate / source_rate)``.

    Raises :class:`MediaError` for a missing or unreadable file, any other format, a file
    without an audio track, and an audio track with no samples.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    with open_input(path, audio_format(path)) as container:
        if not container.streams.audio:
            raise MediaError(f"{path} has no audio track; give {AUDIO_FORMATS}")
        stream = container.streams.audio[0]
        source_rate = stream.codec_context.sample_rate or sample_rate
        # planar float at the target rate, channels kept: the downmix is done here as a mean
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        chunks: list[np.ndarray] = []
        decoded = 0
        try:
            for frame in container.decode(stream):
                decoded += frame.samples
                source_rate = frame.sample_rate or source_rate
                chunks.extend(_mono(f) for f in resampler.resample(frame))
            # the resampler holds back its filter delay until flushed with None
            chunks.extend(_mono(f) for f in resampler.resample(None))
        except av.FFmpegError as e:
            raise MediaError(f"{path}: the audio track cannot be decoded ({describe_error(e)}); "
                             "re-encode it or give another file") from e
    if decoded == 0:
        raise MediaError(f"{path} has an empty audio track (0 samples); give a file with speech")
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    expected = round(decoded * sample_rate / source_rate)
    if samples.shape[0] != expected:
        # swresample can be a sample or two off the ideal length at the edges
        log.debug("resampler gave %d samples, expected %d; trimming/padding", samples.shape[0], expected)
        samples = np.pad(samples[:expected], (0, max(0, expected - samples.shape[0])))
    if samples.shape[0] == 0:
        raise MediaError(f"{path} has an empty audio track (0 samples); give a file with speech")
    log.debug("read %d samples (%.2f s) of %s at %d Hz from %d Hz",
              samples.shape[0], samples.shape[0] / sample_rate, path, sample_rate, source_rate)
    return Audio(samples=np.ascontiguousarray(samples, dtype=np.float32), sample_rate=sample_rate)


def _mono(frame: av.AudioFrame) -> np.ndarray:
    planes = frame.to_ndarray()  # [channels, samples] float32 (planar)
    if planes.shape[0] == 1:
        return planes[0]
    return planes.mean(axis=0, dtype=np.float32)
