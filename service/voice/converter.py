"""``VoiceConverter``: speech in the target speaker's voice with FreeVC (DESIGN §4).

The steps are those of the official ``convert.py`` (OlaWod/FreeVC):

1. target reference at 16 kHz, trimmed with ``top_db`` 20 -> speaker embedding g [256]:
   the resemblyzer speaker encoder for ``freevc`` / ``freevc-24``, the model's own mel LSTM
   for ``freevc-s`` (cached by a hash of the reference, see :mod:`.cache`);
2. source speech, raw 16 kHz waveform (no normalisation) -> WavLM content c [1, 1024, T];
3. ``infer(c, g, noise_scale)`` -> waveform [T * hop] at the model's rate (16 or 24 kHz),
   then resampled to ``output_rate`` when that differs.

Sources longer than one chunk go through steps 2-3 in overlapping chunks joined by a crossfade
(:mod:`.chunks`), so attention and memory stay bounded. The output has ``T * hop`` samples at
the model rate, T = (N - 400) // 320 + 1, so (as with the official code) it is 80 to 399
samples (5-25 ms at 16 kHz) shorter than the N-sample source.

One conversion at a time per converter (the models are shared; the service serialises work per
device); the embedding cache itself is thread-safe.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

import numpy as np
import torch

from service.types import Audio

from .cache import DEFAULT_MAX_ENTRIES, CacheInfo, EmbeddingCache, reference_key
from .chunks import crossfade_join, plan_chunks
from .inputs import MIN_REFERENCE_S, SAMPLE_RATE, check_source, prepare_reference
from .resample import resample
from .trim import DEFAULT_TOP_DB

if TYPE_CHECKING:
    from service.bundle import ModelBundle
    from service.timing import StageTimer

log = logging.getLogger(__name__)

NOISE_SCALE = 1.0        # the official convert.py: infer() draws z_p = m_p + eps * exp(logs_p)
CHUNK_S = 10.0           # 500 content frames: the word and sentence workloads (1-5 s) are one chunk
OVERLAP_S = 1.0          # the 0.25 s seam in its middle keeps 0.375 s of context on both sides
MAX_SOURCE_S = 120.0     # TTS of a few sentences; far longer input is a mistake, not a request
EMBEDDING_DIM = 256


class VoiceConverter:
    """FreeVC conversion with a loaded :class:`~service.bundle.ModelBundle`.

    The bundle needs ``wavlm`` and ``freevc``, and ``speaker`` unless its config is
    ``freevc-s``. Options:

    - ``noise_scale``: scale of the prior noise (``z_p = m_p + s * eps * exp(logs_p)``); 1.0 is
      the official behaviour, 0 the deterministic mean path (FreeVC's VITS ancestors use
      0.667 for TTS; we keep the conversion default and leave it a setting).
    - ``seed``: when set, every conversion reseeds the noise with it, so the same inputs give
      the same output; the global RNG state is saved and restored around it (so no other
      thread should draw from torch's global RNG meanwhile). ``None`` draws from the global RNG
      as the official code does.
    - ``chunk_s`` / ``overlap_s``: sources longer than ``chunk_s`` are converted in chunks of
      at most that length, neighbours overlapping by ``overlap_s`` (at most half a chunk).
    - ``max_source_s``: longer sources are refused (:class:`BadInputError`).
    - ``output_rate``: rate of the returned audio (16000 for lip-sync; 24000 keeps freevc-24's
      native rate).
    - ``top_db`` / ``min_reference_s``: the reference trimming threshold and the speech it must
      keep.
    """

    def __init__(self, bundle: ModelBundle, *, noise_scale: float = NOISE_SCALE, seed: int | None = None,
                 chunk_s: float = CHUNK_S, overlap_s: float = OVERLAP_S, max_source_s: float = MAX_SOURCE_S,
                 output_rate: int = SAMPLE_RATE, top_db: float = DEFAULT_TOP_DB,
                 min_reference_s: float = MIN_REFERENCE_S, cache_size: int = DEFAULT_MAX_ENTRIES) -> None:
        config = bundle.freevc_config
        if bundle.wavlm is None or bundle.freevc is None:
            raise ValueError("VoiceConverter needs a bundle with 'wavlm' and 'freevc' loaded "
                             f"(loaded: {bundle.loaded})")
        if config != "freevc-s" and bundle.speaker is None:
            raise ValueError(f"config {config!r} takes g from the speaker encoder: load the bundle with "
                             "'speaker' as well")
        if not (noise_scale >= 0 and np.isfinite(noise_scale)):
            raise ValueError(f"noise_scale must be finite and >= 0, got {noise_scale}")
        hop_s = bundle.wavlm.cfg.hop / SAMPLE_RATE
        chunk_frames, overlap_frames = round(chunk_s / hop_s), round(overlap_s / hop_s)
        if chunk_frames < 2 or not 0 <= 2 * overlap_frames <= chunk_frames:
            raise ValueError(f"need chunk_s >= {2 * hop_s:g} and 0 <= overlap_s <= chunk_s / 2, "
                             f"got chunk_s={chunk_s}, overlap_s={overlap_s}")
        if max_source_s <= 0 or output_rate <= 0:
            raise ValueError(f"max_source_s and output_rate must be positive, got {max_source_s}, {output_rate}")
        self.bundle = bundle
        self.config = config
        self.noise_scale = float(noise_scale)
        self.seed = seed
        self.chunk_frames = chunk_frames
        self.overlap_frames = overlap_frames
        self.max_source_s = float(max_source_s)
        self.output_rate = int(output_rate)
        self.top_db = float(top_db)
        self.min_reference_s = float(min_reference_s)
        self._cache = EmbeddingCache(cache_size)
        self._cache_context = self._embedding_context()

    # ---- speaker embedding -------------------------------------------------------------------

    def _embedding_context(self) -> str:
        """What besides the samples decides g: config, encoder weights file, device, dtype, trimming."""
        files = {t.name: t.file for t in self.bundle.timings}
        if self.config == "freevc-s":
            model, name = self.bundle.freevc, "freevc"
        else:
            model, name = self.bundle.speaker, "speaker"
        weights = files.get(name, f"{type(model).__name__}@{id(model):x}")
        param = next(model.parameters())
        return f"{self.config}|{weights}|{param.device}|{param.dtype}|top_db={self.top_db}"

    def speaker_embedding(self, reference: Audio) -> tuple[np.ndarray, bool]:
        """Target speaker embedding of 16 kHz reference audio -> (g float32 (256,), cache_hit).

        The returned array is shared with the cache and read-only. Raises
        :class:`BadInputError` for an empty, silent or too short reference (nothing is cached
        then).
        """
        reference.expect_rate(SAMPLE_RATE, "voice conversion (target speaker reference)")
        key = reference_key(reference.samples, reference.sample_rate, self._cache_context)
        cached = self._cache.get(key)
        if cached is not None:
            return cached, True
        wav = prepare_reference(reference, self.top_db, self.min_reference_s)
        with torch.inference_mode():
            if self.config == "freevc-s":
                from models.freevc_mel import mel_spectrogram

                # the official convert.py computes this mel in float32 on the model's device
                x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).to(self.bundle.device)
                g = self.bundle.freevc.speaker_embedding(mel_spectrogram(x[None]))[0]
                g_np = g.float().cpu().numpy()
            else:
                g_np = np.asarray(self.bundle.speaker.embed_utterance(wav), dtype=np.float32)
        if g_np.shape != (EMBEDDING_DIM,) or not np.all(np.isfinite(g_np)):
            raise RuntimeError(f"speaker embedding has shape {g_np.shape} or non-finite values")
        g_np = self._cache.put(key, g_np)
        log.debug("speaker embedding of %.2f s reference (%.2f s after trimming) computed",
                  reference.duration_s, wav.shape[0] / SAMPLE_RATE)
        return g_np, False

    def embedding_cache_info(self) -> CacheInfo:
        """Hits, misses and size of the speaker-embedding cache."""
        return self._cache.info()

    def clear_embedding_cache(self) -> None:
        """Forget every cached embedding and reset the counters."""
        self._cache.clear()

    # ---- conversion ----------------------------------------------------------------------------

    def convert_voice(self, source: Audio, target_reference: Audio, timer: StageTimer | None = None) -> Audio:
        """Speak ``source`` (16 kHz speech) in the voice of ``target_reference`` (16 kHz audio).

        Returns mono float32 :class:`Audio` at ``output_rate``. Stages recorded on ``timer``:
        ``speaker embedding``, ``wavlm``, ``synthesizer``, and ``resample`` when the rate changes.
        Raises :class:`BadInputError` for unusable inputs, ``ValueError`` for a wrong rate.
        """
        check_source(source, self.max_source_s)     # before the embedding: fail fast and cheap
        with _stage(timer, "speaker embedding"):
            g, hit = self.speaker_embedding(target_reference)
        log.debug("speaker embedding cache %s", "hit" if hit else "miss")
        return self.convert_with_embedding(source, g, timer)

    def convert_with_embedding(self, source: Audio, embedding: np.ndarray,
                               timer: StageTimer | None = None) -> Audio:
        """Like :meth:`convert_voice` with a precomputed g (256,) from :meth:`speaker_embedding`."""
        x = check_source(source, self.max_source_s)
        g_np = np.asarray(embedding, dtype=np.float32)
        if g_np.shape != (EMBEDDING_DIM,):
            raise ValueError(f"embedding must have shape ({EMBEDDING_DIM},), got {g_np.shape}")
        wavlm, freevc = self.bundle.wavlm, self.bundle.freevc
        hop_in, window = wavlm.cfg.hop, wavlm.cfg.min_samples
        total = wavlm.num_frames(x.shape[0])
        spans = plan_chunks(total, self.chunk_frames, self.overlap_frames)
        g = torch.from_numpy(g_np.copy())[None].to(self.bundle.device)
        pieces = []
        with torch.inference_mode(), self._seeded():
            for start, end in spans:
                # exactly the samples frames [start, end) see in a whole-signal pass
                seg = torch.from_numpy(np.ascontiguousarray(x[start * hop_in:(end - 1) * hop_in + window]))
                with _stage(timer, "wavlm"):
                    c = wavlm.extract(seg[None])
                with _stage(timer, "synthesizer"):
                    y = freevc.infer(c, g=g, noise_scale=self.noise_scale)
                    pieces.append(y[0, 0].float().cpu().numpy())
        wav = crossfade_join(pieces, spans, freevc.hop)
        rate = freevc.sampling_rate
        if rate != self.output_rate:
            with _stage(timer, "resample"):
                wav = resample(wav, rate, self.output_rate)
        log.debug("converted %.2f s of speech in %d chunk(s) (%s, noise_scale %g) -> %d samples at %d Hz",
                  source.duration_s, len(spans), self.config, self.noise_scale, wav.shape[0], self.output_rate)
        return Audio(samples=wav, sample_rate=self.output_rate)

    def _seeded(self) -> AbstractContextManager[None]:
        """Seed the prior noise with ``seed`` without touching the caller's RNG state.

        FreeVC's ``infer`` draws its noise with ``torch.randn_like`` from the global generator
        of the model's device (the official way, and the model API takes no generator), so the
        seed is applied inside ``torch.random.fork_rng``, which restores the state afterwards.
        """
        if self.seed is None or self.noise_scale == 0:
            return nullcontext()
        return _forked_seed(self.seed, self.bundle.device)


@contextmanager
def _forked_seed(seed: int, device: torch.device) -> Iterator[None]:
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _stage(timer: StageTimer | None, name: str) -> AbstractContextManager[None]:
    return timer.stage(name) if timer is not None else nullcontext()
