"""Voice conversion (service/voice, ``lipsync convert``) on generated FreeVC/WavLM checkpoints.

The weights are generated, not trained, so the converted audio is noise-like: these tests check
the pipeline (paths, shapes, rates, seeding, chunking, caching, errors), not how it sounds.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from models.freevc_mel import mel_spectrogram
from service.bundle import ModelBundle, load_bundle
from service.commands.convert import add_convert_arguments, run_convert
from service.errors import BadInputError
from service.media import read_audio
from service.settings import Settings
from service.tts.wavfile import write_wav
from service.types import Audio
from service.voice import VoiceConverter, peak_rms_dbfs, resample, trim_bounds, trim_silence
from service.voice.chunks import crossfade_join, plan_chunks

from .conftest import DATA

SR = 16000
CPU = torch.device("cpu")


def _frames(n: int) -> int:
    """WavLM content frames of n samples."""
    return (n - 400) // 320 + 1


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """2.99 s of real (espeak-ng) speech at 16 kHz."""
    return read_audio(DATA / "speech_dev.wav", SR).samples


@pytest.fixture(scope="module")
def reference(speech: np.ndarray) -> Audio:
    """The target speaker: the speech with 0.3 s of silence around it (trimmed away)."""
    pad = np.zeros(int(0.3 * SR), np.float32)
    return Audio(np.concatenate([pad, speech, pad]), SR)


@pytest.fixture(scope="module")
def source(speech: np.ndarray) -> Audio:
    """0.75 s of speech: about the W-word workload, short to keep the suite fast."""
    return Audio(speech[4000:16000].copy(), SR)


@pytest.fixture(scope="module")
def bundle(weights_dir: Path) -> ModelBundle:
    return load_bundle(weights_dir, CPU, freevc_config="freevc", warm=False, only=("wavlm", "freevc", "speaker"))


def _with_config(base: ModelBundle, weights_dir: Path, config: str) -> ModelBundle:
    """Another FreeVC config sharing the already loaded WavLM and speaker encoder."""
    other = load_bundle(weights_dir, CPU, freevc_config=config, warm=False, only=("freevc",))
    return dataclasses.replace(other, wavlm=base.wavlm, speaker=base.speaker)


@pytest.fixture(scope="module")
def bundle_s(bundle: ModelBundle, weights_dir: Path) -> ModelBundle:
    return _with_config(bundle, weights_dir, "freevc-s")


@pytest.fixture(scope="module")
def bundle_24(bundle: ModelBundle, weights_dir: Path) -> ModelBundle:
    return _with_config(bundle, weights_dir, "freevc-24")


# ---- signal helpers ---------------------------------------------------------------------------

def _trim_cases(speech: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    noise = rng.standard_normal(30000).astype(np.float32)
    cases = {
        "speech": speech,
        "padded": np.concatenate([np.zeros(7000, np.float32), speech, 1e-4 * noise[:9000]]),
        "impulse": np.where(np.arange(20000) == 12345, 0.5, 0.0).astype(np.float32),
        "zeros": np.zeros(5000, np.float32),
        "short": speech[:300],
        "float64": speech.astype(np.float64),
    }
    for i in range(20):
        n = int(rng.integers(1, 30000))
        y = noise[:n] * np.linspace(0, 1, n, dtype=np.float32) ** rng.uniform(1, 8)
        cases[f"ramp{i}"] = y.astype(np.float32)
    return cases


@pytest.mark.skipif(importlib.util.find_spec("librosa") is None, reason="librosa is not installed")
def test_trim_matches_librosa_exactly(speech: np.ndarray) -> None:
    import librosa

    for name, y in _trim_cases(speech).items():
        want_y, want_idx = librosa.effects.trim(y, top_db=20)
        assert trim_bounds(y, 20) == tuple(int(i) for i in want_idx), name
        assert np.array_equal(trim_silence(y, 20), want_y), name


def test_trim_keeps_speech_and_drops_padding(speech: np.ndarray) -> None:
    s0, e0 = trim_bounds(speech, 20)
    padded = np.concatenate([np.zeros(SR, np.float32), speech, np.zeros(SR, np.float32)])
    start, end = trim_bounds(padded, 20)
    # the same speech is kept; the 512-sample frame grid shifts by the padding (16000 % 512 = 128)
    assert abs(start - (SR + s0)) <= 512 and abs(end - (SR + e0)) <= 512
    assert trim_bounds(np.zeros(4000, np.float32)) == (0, 4000)   # librosa: silence is not trimmed
    assert peak_rms_dbfs(np.zeros(4000, np.float32)) == float("-inf")


def _tone(freq: float, rate: int, n: int) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / rate).astype(np.float32)


def test_resample_24k_to_16k_is_band_limited() -> None:
    n = 2 * 24000
    for freq in (440.0, 1000.0, 5000.0):
        y = resample(_tone(freq, 24000, n), 24000, 16000)
        assert y.shape == (32000,) and y.dtype == np.float32
        # away from the zero-padded ends the result is the ideal sine at the new rate
        assert np.abs(y - _tone(freq, 16000, 32000))[200:-200].max() < 1e-4, freq
    for freq, max_db in ((8500.0, -75.0), (10000.0, -120.0)):   # above the new Nyquist: must not alias
        y = resample(_tone(freq, 24000, n), 24000, 16000)[200:-200]
        assert 20 * np.log10(np.sqrt(np.mean(y ** 2) * 2)) < max_db, freq
    assert resample(np.ones(7, np.float32), 24000, 16000).shape == (5,)     # ceil(7 * 2 / 3)
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)


def test_chunk_plan_and_crossfade() -> None:
    assert plan_chunks(100, 150, 50) == [(0, 100)]
    spans = plan_chunks(299, 150, 50)
    assert spans[0][0] == 0 and spans[-1][1] == 299
    assert all(e - s <= 150 for s, e in spans)
    assert all(b - c == 50 for (_, b), (c, _) in zip(spans, spans[1:], strict=False))
    # weights sum to one everywhere: equal pieces join into the same signal
    hop = 4
    pieces = [np.full((e - s) * hop, 0.25, np.float32) for s, e in spans]
    assert np.allclose(crossfade_join(pieces, spans, hop), 0.25, atol=1e-7)
    with pytest.raises(ValueError):
        crossfade_join(pieces[:1], spans, hop)


# ---- conversion -------------------------------------------------------------------------------

def test_output_shape_rate_and_official_steps(bundle: ModelBundle, source: Audio, reference: Audio) -> None:
    vc = VoiceConverter(bundle, noise_scale=0.0)
    out = vc.convert_voice(source, reference)
    assert out.sample_rate == SR
    assert out.samples.shape == (_frames(source.samples.size) * 320,)
    assert out.samples.dtype == np.float32 and np.all(np.isfinite(out.samples))
    assert np.abs(out.samples).max() < 1.0          # the decoder ends in tanh
    # the same as the official steps run by hand: trimmed reference -> g, raw source -> c -> infer
    g = bundle.speaker.embed_utterance(trim_silence(reference.samples, 20))
    with torch.inference_mode():
        c = bundle.wavlm.extract(torch.from_numpy(source.samples)[None])
        want = bundle.freevc.infer(c, g=torch.from_numpy(g)[None], noise_scale=0.0)[0, 0].numpy()
    np.testing.assert_array_equal(out.samples, want)


def test_seed_makes_output_reproducible(bundle: ModelBundle, source: Audio, reference: Audio) -> None:
    state = torch.random.get_rng_state()
    a = VoiceConverter(bundle, seed=7).convert_voice(source, reference).samples
    assert torch.equal(torch.random.get_rng_state(), state)       # the caller's RNG is untouched
    b = VoiceConverter(bundle, seed=7).convert_voice(source, reference).samples
    c = VoiceConverter(bundle, seed=8).convert_voice(source, reference).samples
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3
    # the noise really is there: the mean path differs
    mean_path = VoiceConverter(bundle, noise_scale=0.0).convert_voice(source, reference).samples
    assert np.abs(a - mean_path).mean() > 1e-3
    # and noise_scale 0 needs no seed to be deterministic
    again = VoiceConverter(bundle, noise_scale=0.0).convert_voice(source, reference).samples
    np.testing.assert_array_equal(mean_path, again)


def test_chunked_conversion_matches_whole(bundle: ModelBundle, speech: np.ndarray, reference: Audio) -> None:
    src = Audio(np.tile(speech, 2), SR)                             # 5.97 s -> 298 frames
    whole = VoiceConverter(bundle, noise_scale=0.0).convert_voice(src, reference).samples
    chunked_vc = VoiceConverter(bundle, noise_scale=0.0, chunk_s=3.0, overlap_s=1.0)
    spans = plan_chunks(_frames(src.samples.size), chunked_vc.chunk_frames, chunked_vc.overlap_frames)
    assert spans == [(0, 133), (83, 216), (166, 298)]          # 2.66 s chunks, 1 s overlaps
    chunked = chunked_vc.convert_voice(src, reference).samples
    assert chunked.shape == whole.shape
    # Tolerance: the generated (untrained) WavLM attends over its whole input, so cutting it
    # changes every frame's content by ~10 % of |c| (measured), not only near the cuts, and the
    # audio follows; the synthesizer alone, given the same content, joins within 1.1e-5 of the
    # whole pass. So the chunked audio is compared on average (measured: 0.086 of the mean
    # signal level) ...
    diff = np.abs(chunked - whole)
    assert diff.mean() < 0.15 * np.abs(whole).mean()
    # ... and must have no seam: around each crossfade, no sample-to-sample jump beyond the
    # largest one the unchunked output makes anywhere (a click would be one)
    biggest_jump = np.abs(np.diff(whole)).max()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        seam = chunked[start * 320:end * 320]
        assert np.abs(np.diff(seam)).max() <= biggest_jump


def test_speaker_embedding_cache(bundle: ModelBundle, source: Audio, reference: Audio) -> None:
    vc = VoiceConverter(bundle, noise_scale=0.0)
    g, hit = vc.speaker_embedding(reference)
    assert not hit and g.shape == (256,) and g.dtype == np.float32
    assert abs(float(np.linalg.norm(g)) - 1.0) < 1e-5               # resemblyzer: unit norm
    g2, hit2 = vc.speaker_embedding(Audio(reference.samples.copy(), SR))   # same samples, new object
    assert hit2 and g2 is g and not g2.flags.writeable
    _, hit3 = vc.speaker_embedding(Audio(reference.samples[:-1600].copy(), SR))
    assert not hit3
    converted = vc.convert_voice(source, reference)
    info = vc.embedding_cache_info()
    assert (info.hits, info.misses, info.size) == (2, 2, 2)
    # a precomputed embedding (the service caches one per input video) gives the same audio
    np.testing.assert_array_equal(vc.convert_with_embedding(source, g).samples, converted.samples)


def test_freevc_s_uses_its_own_mel_speaker_encoder(bundle_s: ModelBundle, source: Audio,
                                                   reference: Audio) -> None:
    vc = VoiceConverter(bundle_s, noise_scale=0.0)
    g, _ = vc.speaker_embedding(reference)
    trimmed = torch.from_numpy(trim_silence(reference.samples, 20).copy())
    with torch.inference_mode():
        want = bundle_s.freevc.speaker_embedding(mel_spectrogram(trimmed[None]))[0].numpy()
    np.testing.assert_array_equal(g, want)
    out = vc.convert_voice(source, reference)
    assert out.sample_rate == SR and out.samples.shape == (_frames(source.samples.size) * 320,)


def test_freevc_24_returns_16k_or_its_own_24k(bundle_24: ModelBundle, source: Audio, reference: Audio) -> None:
    t = _frames(source.samples.size)
    native = VoiceConverter(bundle_24, noise_scale=0.0, output_rate=24000).convert_voice(source, reference)
    assert native.sample_rate == 24000 and native.samples.shape == (t * 480,)
    out = VoiceConverter(bundle_24, noise_scale=0.0).convert_voice(source, reference)
    assert out.sample_rate == SR and out.samples.shape == (t * 320,)
    np.testing.assert_array_equal(out.samples, resample(native.samples, 24000, SR))


@pytest.mark.parametrize(("make_source", "make_reference", "message"), [
    (lambda s: s[:0], None, "empty"),
    (lambda s: s[:399], None, "399 samples"),
    (lambda s: np.tile(s, 2), None, "the limit is 3 s"),
    (None, lambda s: np.zeros(3 * SR, np.float32), "silent (loudest passage: digital silence"),
    (None, lambda s: 1e-4 * s, "silent (loudest passage: -"),
    (None, lambda s: np.concatenate([np.zeros(SR, np.float32), s[8000:18000], np.zeros(SR, np.float32)]),
     "only 0."),
    (None, lambda s: s[:0], "empty"),
])
def test_bad_inputs_are_clear_errors(bundle: ModelBundle, speech: np.ndarray, make_source, make_reference,
                                     message: str) -> None:
    src = make_source(speech) if make_source else speech[:SR]
    ref = make_reference(speech) if make_reference else speech
    vc = VoiceConverter(bundle, max_source_s=3.0)
    with pytest.raises(BadInputError, match=message.replace("(", r"\(")):
        vc.convert_voice(Audio(np.ascontiguousarray(src, np.float32), SR), Audio(np.ascontiguousarray(ref), SR))
    assert vc.embedding_cache_info().size == 0          # nothing cached for a failed reference


def test_wrong_rate_and_bad_options(bundle: ModelBundle, speech: np.ndarray) -> None:
    vc = VoiceConverter(bundle)
    with pytest.raises(ValueError, match="needs 16000 Hz"):
        vc.convert_voice(Audio(speech, 22050), Audio(speech, SR))
    with pytest.raises(ValueError, match="needs 16000 Hz"):
        vc.speaker_embedding(Audio(speech, 8000))
    with pytest.raises(ValueError, match="overlap_s"):
        VoiceConverter(bundle, chunk_s=2.0, overlap_s=1.5)
    with pytest.raises(ValueError, match="noise_scale"):
        VoiceConverter(bundle, noise_scale=-1.0)
    with pytest.raises(ValueError, match="speaker"):
        VoiceConverter(dataclasses.replace(bundle, speaker=None))


# ---- lipsync convert --------------------------------------------------------------------------

def _write_video_with_speech(path: Path, samples: np.ndarray) -> Path:
    """A tiny H.264 + AAC mp4 (64x64 grey frames at 10 fps) carrying ``samples`` as its sound."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=SR, layout="mono")
        for i in range(int(np.ceil(samples.size / SR * 10))):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for start in range(0, samples.size, 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024].copy(), format="flt", layout="mono")
            frame.sample_rate = SR
            frame.pts = start
            frame.time_base = Fraction(1, SR)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def _convert_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_convert_arguments(p)
    return p.parse_args(list(argv))


def test_run_convert_with_a_video_target(weights_dir: Path, tmp_path: Path, speech: np.ndarray,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    target = _write_video_with_speech(tmp_path / "user.mp4", speech)
    source = write_wav(tmp_path / "word.wav", Audio(speech[4000:20000].copy(), SR))    # 1 s
    out = tmp_path / "converted.wav"
    settings = Settings(weights_dir=weights_dir, device="cpu")
    rc = run_convert(_convert_args("--source", str(source), "--target", str(target), "--out", str(out),
                                   "--seed", "3", "--precision", "fp32"), settings)
    assert rc == 0, capsys.readouterr().err
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SR)
        assert w.getnframes() == _frames(SR) * 320
    err = capsys.readouterr().err
    for step in ("read target", "load models", "speaker embedding", "wavlm", "synthesizer", "write"):
        assert step in err
    assert "precision on cpu: WavLM+FreeVC fp32 (set)" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp file left


def test_run_convert_bad_input_exit_codes(weights_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(weights_dir=weights_dir, device="cpu")
    source = str(DATA / "speech_dev.wav")
    out = tmp_path / "o.wav"
    assert run_convert(_convert_args("--source", source, "--target", str(tmp_path / "missing.mp4"),
                                     "--out", str(out)), settings) == 2
    assert run_convert(_convert_args("--source", source, "--target", str(DATA / "face_dev.mp4"),
                                     "--out", str(out)), settings) == 2      # a video without sound
    assert "no audio track" in capsys.readouterr().err
    assert run_convert(_convert_args("--source", source, "--target", source, "--out", str(tmp_path)),
                       settings) == 2                                         # --out is a folder
    assert run_convert(_convert_args("--source", source, "--target", source, "--out", str(out)),
                       Settings(weights_dir=tmp_path, device="cpu")) == 1    # no weights there
    assert "missing model weights" in capsys.readouterr().err
    assert not out.exists()


def test_voice_precision_setting_picks_the_voice_models_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    import service.precision as precision
    from service.settings import lipsync_dtype, voice_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(precision, "cpu_bf16", lambda: precision.CpuBf16(avx512_bf16=False, amx_bf16=False))
    assert voice_dtype(cpu, Settings()) == torch.float32            # no native bf16: fp32
    assert voice_dtype(cuda, Settings()) == torch.float16           # HALF_PRECISION on a GPU
    assert voice_dtype(cuda, Settings(half_precision=False)) == torch.float32
    assert voice_dtype(cpu, Settings(voice_precision="bf16")) == torch.bfloat16
    # independent of Wav2Lip's setting
    assert lipsync_dtype(cpu, Settings(voice_precision="bf16")) == torch.float32
    monkeypatch.setattr(precision, "cpu_bf16", lambda: precision.CpuBf16(avx512_bf16=True, amx_bf16=False))
    assert voice_dtype(cpu, Settings()) == torch.bfloat16           # native bf16: the fast default
    assert voice_dtype(cpu, Settings(voice_precision="fp32")) == torch.float32


def test_bf16_voice_models_convert_close_to_fp32(weights_dir: Path, bundle: ModelBundle, source: Audio,
                                                reference: Audio) -> None:
    """VOICE_PRECISION=bf16: the whole conversion runs in bf16 and lands near fp32 (the mean
    path, noise_scale 0), at fp32's output rate and length."""
    half = load_bundle(weights_dir, CPU, torch.bfloat16, freevc_config="freevc", warm=False,
                       only=("wavlm", "freevc"))
    half = dataclasses.replace(half, speaker=bundle.speaker)
    assert half.wavlm.dtype == torch.bfloat16 and next(half.freevc.parameters()).dtype == torch.bfloat16
    want = VoiceConverter(bundle, noise_scale=0.0).convert_voice(source, reference)
    got = VoiceConverter(half, noise_scale=0.0).convert_voice(source, reference)
    assert got.sample_rate == want.sample_rate and got.samples.shape == want.samples.shape
    assert got.samples.dtype == np.float32
    level = np.abs(want.samples).mean()
    assert np.abs(got.samples - want.samples).mean() < 0.1 * level
