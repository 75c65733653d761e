"""Overlapping chunks of content frames, and the crossfade that joins their waveforms.

A long source is converted in chunks so WavLM's attention (quadratic in length) and the
synthesizer's activations stay bounded. Chunks are cut in content frames (one WavLM frame =
320 input samples = ``hop`` output samples), so each chunk's frames are computed from exactly
the samples the whole-signal pass would use; only the context differs near a cut. Adjacent
chunks overlap, and the seam is a raised-cosine crossfade over the middle quarter of the
overlap: both chunks are used only at least 3/8 of the overlap away from their own cut edges,
where the missing context has faded. The synthesizer's WaveNet stacks reach about a second, but
their influence decays fast: measured with the same content and a 1 s overlap, the joined
waveform is within 1.1e-5 of a whole-signal pass with this fade, 1.6e-4 with a fade over half
the overlap and 7e-3 over all of it (generated weights, so only the locality is meaningful).

The crossfade weights sum to exactly 1 (a linear crossfade with a smooth shape), not an
equal-power one: both chunks convert the same content, so their waveforms agree in the overlap,
and equal-power weights (cos/sin) would raise such correlated signals by up to 3 dB mid-fade.
"""
from __future__ import annotations

import math

import numpy as np

FADE_SHARE = 0.25  # crossfade length as a share of the overlap, centred in it (0.25 s of 1 s)


def plan_chunks(total_frames: int, chunk_frames: int, overlap_frames: int) -> list[tuple[int, int]]:
    """Split frames [0, total) into chunks [start, end) of at most ``chunk_frames`` frames.

    One chunk when ``total_frames <= chunk_frames``. Otherwise the fewest chunks of at most
    ``chunk_frames`` whose neighbours overlap by exactly ``overlap_frames``, all of one length
    L except the last, which ends at ``total`` and is no longer than L (and longer than the
    overlap). L is chosen as small as that count allows, so the work is spread evenly and no
    sliver of a chunk is left at the end.
    """
    if total_frames < 1:
        raise ValueError(f"total_frames must be at least 1, got {total_frames}")
    if not 0 <= overlap_frames < chunk_frames:
        raise ValueError(f"need 0 <= overlap ({overlap_frames}) < chunk ({chunk_frames}) frames")
    if total_frames <= chunk_frames:
        return [(0, total_frames)]
    count = math.ceil((total_frames - overlap_frames) / (chunk_frames - overlap_frames))
    length = math.ceil((total_frames + (count - 1) * overlap_frames) / count)
    step = length - overlap_frames
    # starts below total - overlap: the last chunk always reaches past its overlap
    return [(s, min(total_frames, s + length)) for s in range(0, total_frames - overlap_frames, step)]


def _fade_in(length: int) -> np.ndarray:
    """Raised-cosine ramp 0 -> 1 over ``length`` samples (float64; ``1 - ramp`` is its mirror)."""
    k = (np.arange(length, dtype=np.float64) + 0.5) / length
    return 0.5 - 0.5 * np.cos(np.pi * k)


def crossfade_join(pieces: list[np.ndarray], spans: list[tuple[int, int]], hop: int,
                   fade_share: float = FADE_SHARE) -> np.ndarray:
    """Join chunk waveforms into one: pieces[i] [(end - start) * hop] for ``spans[i]`` (frames).

    Returns float32 [spans[-1][1] * hop]. Where chunk i and i+1 overlap (frames
    ``[start_{i+1}, end_i)``), the output switches from i to i+1 with a raised-cosine crossfade
    of ``fade_share`` of the overlap, centred in it; elsewhere each sample comes from one chunk.
    """
    if len(pieces) != len(spans) or not pieces:
        raise ValueError(f"{len(pieces)} pieces for {len(spans)} spans")
    for piece, (s, e) in zip(pieces, spans, strict=True):
        if piece.shape != ((e - s) * hop,):
            raise ValueError(f"chunk [{s}, {e}) needs {(e - s) * hop} samples, got shape {piece.shape}")
    if len(pieces) == 1:
        return pieces[0].astype(np.float32, copy=False)
    # seams[i] = (first sample of the fade, fade length) between chunk i and i + 1
    seams = []
    for (s0, e0), (s1, e1) in zip(spans, spans[1:], strict=False):
        if not s0 < s1 <= e0 < e1:
            raise ValueError(f"chunks [{s0}, {e0}) and [{s1}, {e1}) must touch or overlap, and advance")
        overlap = (e0 - s1) * hop
        length = round(overlap * fade_share)   # 0: a plain cut
        seams.append((s1 * hop + (overlap - length) // 2, length))
    for (a0, n0), (a1, _) in zip(seams, seams[1:], strict=False):
        if a0 + n0 > a1:
            raise ValueError("crossfades of neighbouring seams overlap: keep the overlap at most "
                             "half a chunk")
    out = np.zeros(spans[-1][1] * hop, dtype=np.float64)
    for i, (piece, (s, _)) in enumerate(zip(pieces, spans, strict=True)):
        w = np.ones(piece.shape[0], dtype=np.float64)
        if i > 0:
            a, n = seams[i - 1]
            w[:a - s * hop] = 0.0
            w[a - s * hop:a - s * hop + n] = _fade_in(n)
        if i < len(pieces) - 1:
            a, n = seams[i]
            w[a - s * hop:a - s * hop + n] = 1.0 - _fade_in(n)
            w[a - s * hop + n:] = 0.0
        out[s * hop:s * hop + piece.shape[0]] += w * piece
    return out.astype(np.float32)
