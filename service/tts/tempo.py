"""Speed change that keeps pitch: FFmpeg's ``atempo`` filter (WSOLA) through PyAV.

Applied to finished speech, so synthesis cost does not depend on the speed and cached speech is
shared between speeds (the customer's MeloTTS report did the same).
"""
from __future__ import annotations

import logging
import math
from fractions import Fraction

import av
import numpy as np
from av.filter import Graph

from service.types import Audio

log = logging.getLogger(__name__)

MIN_SPEED, MAX_SPEED = 0.5, 4.0  # one atempo instance covers 0.5..100; past 4x speech is a blur
_FRAME_SAMPLES = 8192  # push size; atempo keeps its own overlap state across frames


def change_tempo(audio: Audio, speed: float) -> Audio:
    """``audio`` played ``speed`` times faster at the same pitch and sample rate.

    Returns float32 [round(N / speed)]: atempo's own output can be a few ms short at the end
    (its last window), so it is padded with silence or trimmed to the exact length. ``speed``
    1.0 returns ``audio`` itself (bit-identical). Raises ``ValueError`` outside
    [:data:`MIN_SPEED`, :data:`MAX_SPEED`] (callers validate user input first).
    """
    if speed == 1.0:
        return audio
    if not math.isfinite(speed) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be within {MIN_SPEED}..{MAX_SPEED}, got {speed}")
    n, rate = audio.samples.shape[0], audio.sample_rate
    target = round(n / speed)
    if n == 0:
        return audio
    graph = Graph()
    src = graph.add_abuffer(format="flt", sample_rate=rate, layout="mono", channels=1,
                            time_base=Fraction(1, rate))
    tempo = graph.add("atempo", f"{speed:.6f}")
    sink = graph.add("abuffersink")
    src.link_to(tempo)
    tempo.link_to(sink)
    graph.configure()
    out: list[np.ndarray] = []
    samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
    for start in range(0, n, _FRAME_SAMPLES):
        frame = av.AudioFrame.from_ndarray(samples[None, start:start + _FRAME_SAMPLES], format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        graph.push(frame)
        _drain(graph, out)
    graph.push(None)  # flush atempo's buffered tail
    _drain(graph, out)
    result = np.concatenate(out) if out else np.zeros(0, np.float32)
    if result.shape[0] != target:
        log.debug("atempo %.3f gave %d samples for %d; fitting to %d", speed, result.shape[0], n, target)
        result = np.pad(result[:target], (0, max(0, target - result.shape[0])))
    return Audio(np.ascontiguousarray(result, dtype=np.float32), rate)


def _drain(graph: Graph, out: list[np.ndarray]) -> None:
    while True:
        try:
            frame = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return
        out.append(frame.to_ndarray().reshape(-1).astype(np.float32, copy=False))
