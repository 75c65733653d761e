"""TTS engines (real espeak-ng; gTTS against its local fake is in test_tts_gtts.py), speed,
segmentation, the service object (sync and async) and ``lipsync speak``.
Offline: the real Google service is never called."""
from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from service.commands.speak import add_speak_arguments, run_speak
from service.errors import BadInputError
from service.tts import (
    EspeakEngine,
    GTTSEngine,
    TextToSpeech,
    TTSCache,
    TTSConfig,
    TTSUnavailableError,
    UnknownEngineError,
    UnsupportedLanguageError,
    change_tempo,
    segment_text,
    split_long,
    split_sentences,
)
from service.types import Audio

SR = 16000
CUSTOMER_LANGS = ("ko", "en", "ja", "zh", "es", "fr")


def tone(freq: float, seconds: float, rate: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.shape[0])))
    return float(np.argmax(spectrum) * rate / samples.shape[0])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- espeak-ng (real) --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def espeak() -> EspeakEngine:
    return EspeakEngine()


def test_espeak_languages_come_from_the_installed_voices(espeak: EspeakEngine) -> None:
    langs = espeak.languages()
    assert set(CUSTOMER_LANGS) <= langs
    assert espeak.resolve_language("zh-CN") == "zh" and espeak.resolve_language("EN_us") == "en-us"
    assert espeak.resolve_language("en-AU") == "en"  # regional code falls back to the language
    assert espeak.cache_fields("en")["voice"] != espeak.cache_fields("en-gb")["voice"]


@pytest.mark.parametrize(("lang", "text", "max_s"), [("ko", "안녕하세요, 만나서 반갑습니다.", 4.0),
                                                     ("en", "Hello, nice to meet you.", 3.0)])
def test_espeak_speaks(espeak: EspeakEngine, lang: str, text: str, max_s: float) -> None:
    audio = espeak.synthesize(text, lang)
    assert audio.sample_rate == SR and audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert 0.8 < audio.duration_s < max_s
    assert rms(audio.samples) > 0.02  # speech, not silence
    assert np.abs(audio.samples).max() <= 1.05


def test_espeak_text_is_never_an_option(espeak: EspeakEngine) -> None:
    audio = espeak.synthesize("-v xx --help", "en")  # spoken, not parsed as flags
    assert audio.duration_s > 0.5


def test_espeak_parameters_change_audio_and_are_checked(espeak: EspeakEngine) -> None:
    slow = espeak.synthesize("one two three four", "en", rate_wpm=100)
    fast = espeak.synthesize("one two three four", "en", rate_wpm=300)
    assert slow.duration_s > 1.8 * fast.duration_s
    with pytest.raises(BadInputError, match="rate_wpm"):
        espeak.synthesize("hi", "en", rate_wpm=5)
    with pytest.raises(BadInputError, match="no parameter"):
        espeak.synthesize("hi", "en", volume=3)


@pytest.mark.parametrize("engine", ["espeak-ng", "gtts"])
def test_unsupported_language_lists_supported_codes(engine: str) -> None:
    tts = TextToSpeech({"espeak-ng": EspeakEngine(), "gtts": GTTSEngine(f"http://127.0.0.1:{closed_port()}")})
    with pytest.raises(UnsupportedLanguageError) as info:
        tts.synthesize_speech("hello", "xx-klingon", engine=engine)
    assert isinstance(info.value, BadInputError)
    message = str(info.value)
    assert "'xx-klingon'" in message and engine in message
    for code in ("ko", "en", "ja", "es", "fr"):
        assert f" {code}," in message or message.endswith(f" {code}")
    assert ("zh-CN" if engine == "gtts" else "cmn") in message


def test_unknown_engine_lists_the_engines() -> None:
    tts = TextToSpeech({"espeak-ng": EspeakEngine()})
    with pytest.raises(UnknownEngineError, match="choose one of: espeak-ng"):
        tts.synthesize_speech("hello", "en", engine="melotts")
    with pytest.raises(BadInputError, match="gtts"):
        TextToSpeech.from_config(TTSConfig(engine="nope"))


# ---- speed -------------------------------------------------------------------------------------

@pytest.mark.parametrize("speed", [0.5, 0.8, 1.25, 2.0])
def test_speed_changes_duration_and_keeps_pitch(speed: float) -> None:
    audio = Audio(tone(440, 2.0), SR)
    faster = change_tempo(audio, speed)
    assert faster.samples.shape[0] == round(audio.samples.shape[0] / speed)
    assert faster.sample_rate == SR and faster.samples.dtype == np.float32
    assert abs(peak_hz(faster.samples) - 440) / 440 < 0.02
    assert abs(rms(faster.samples) - rms(audio.samples)) < 0.02


def test_speed_one_is_bit_identical_and_limits_hold() -> None:
    audio = Audio(tone(300, 0.5), SR)
    assert change_tempo(audio, 1.0) is audio
    with pytest.raises(ValueError, match="speed"):
        change_tempo(audio, 0.25)


def test_speed_through_the_service(espeak: EspeakEngine) -> None:
    tts = TextToSpeech({"espeak-ng": espeak})
    normal, _ = tts.synthesize_speech("The quick brown fox jumps over the lazy dog.", "en")
    double, _ = tts.synthesize_speech("The quick brown fox jumps over the lazy dog.", "en", speed=2.0)
    assert abs(double.duration_s - normal.duration_s / 2) < 0.01
    for bad in (0.1, 9, float("nan"), "fast"):
        with pytest.raises(BadInputError, match="speed"):
            tts.synthesize_speech("hi", "en", speed=bad)  # type: ignore[arg-type]


# ---- segmentation ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("Hello there. How are you? Fine! Pi is 3.14, see example.com.",
     ["Hello there.", "How are you?", "Fine!", "Pi is 3.14, see example.com."]),
    ("안녕하세요. 반갑습니다! 오늘 날씨가 좋네요?", ["안녕하세요.", "반갑습니다!", "오늘 날씨가 좋네요?"]),
    ("こんにちは。元気ですか？「はい。」本当!すごい",
     ["こんにちは。", "元気ですか？", "「はい。」", "本当!", "すごい"]),
    ("你好。今天天气很好！我们去公园吧？", ["你好。", "今天天气很好！", "我们去公园吧？"]),
    ("¿Cómo estás? ¡Muy bien! Gracias.", ["¿Cómo estás?", "¡Muy bien!", "Gracias."]),
    ("Bonjour ! Comment ça va ? Très bien… Merci.", ["Bonjour !", "Comment ça va ?", "Très bien…", "Merci."]),
    ('He said "Stop." Then\nleft', ['He said "Stop."', "Then", "left"]),
], ids=["en", "ko", "ja", "zh", "es", "fr", "quotes-newline"])
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_segments_merge_short_fragments_and_cut_long_sentences() -> None:
    assert segment_text("Mr. Smith went home. He slept well.") == ["Mr. Smith went home.", "He slept well."]
    assert segment_text("Hi. I am Ann. Nice to meet you!") == ["Hi. I am Ann.", "Nice to meet you!"]
    assert segment_text("你好。谢谢。") == ["你好。谢谢。"]  # CJK joined without a space
    long_en = ", ".join(["a clause of several words"] * 20) + "."
    pieces = segment_text(long_en, max_chars=80)
    assert all(len(p) <= 80 for p in pieces) and all(p.endswith((",", ".")) for p in pieces)
    assert " ".join(pieces) == long_en
    long_zh = "这是一个很长的句子没有任何标点" * 10
    assert "".join(split_long(long_zh, 40)) == long_zh and max(map(len, split_long(long_zh, 40))) <= 40


# ---- the service object ------------------------------------------------------------------------

class ToneEngine:
    """A test engine: segment i (by its first word) -> a tone; records concurrency."""

    name = "tone"

    def __init__(self) -> None:
        self.active = self.max_active = self.calls = 0
        self.lock = threading.Lock()

    def languages(self) -> set[str]:
        return {"en"}

    def resolve_language(self, lang: str) -> str:
        if lang != "en":
            raise UnsupportedLanguageError(lang, self.name, self.languages())
        return lang

    def cache_fields(self, lang: str, **params: Any) -> dict[str, Any]:
        return {"lang": lang}

    def synthesize(self, text: str, lang: str, **params: Any) -> Audio:
        index = int(text.split()[1])
        with self.lock:
            self.calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(0.05 * (5 - index % 5))  # later segments finish first
        with self.lock:
            self.active -= 1
        return Audio(tone(200 + 50 * index, 0.3), SR)


def test_long_text_is_synthesized_in_parallel_and_joined_in_order() -> None:
    engine = ToneEngine()
    text = " ".join(f"Sentence {i} is here." for i in range(8))
    with TextToSpeech({"tone": engine}, default_engine="tone", max_parallel=4, pause_s=0.2) as tts:
        audio, hit = tts.synthesize_speech(text, "en")
    assert not hit and engine.calls == 8 and engine.max_active > 1
    gap = np.zeros(round(0.2 * SR), np.float32)
    parts = [tone(200 + 50 * i, 0.3) for i in range(8)]
    expected = np.concatenate([x for p in parts for x in (p, gap)][:-1])
    np.testing.assert_array_equal(audio.samples, expected)


def test_parallel_espeak_equals_segments_in_order(espeak: EspeakEngine) -> None:
    text = "First sentence is here. Second one follows now. And the third one ends it."
    with TextToSpeech({"espeak-ng": espeak}, max_parallel=3, pause_s=0.15) as tts:
        audio, _ = tts.synthesize_speech(text, "en")
    parts = [espeak.synthesize(s, "en").samples for s in segment_text(text)]
    gap = np.zeros(round(0.15 * SR), np.float32)
    np.testing.assert_array_equal(audio.samples, np.concatenate([parts[0], gap, parts[1], gap, parts[2]]))


def test_text_validation() -> None:
    tts = TextToSpeech({"tone": ToneEngine()}, default_engine="tone", max_chars=50)
    for empty in ("", "   \n\t "):
        with pytest.raises(BadInputError, match="empty"):
            tts.synthesize_speech(empty, "en")
    with pytest.raises(BadInputError, match="over the limit of 50"):
        tts.synthesize_speech("Sentence 1 " * 10, "en")


def test_async_api_matches_sync(espeak: EspeakEngine, tmp_path: Path) -> None:
    with TextToSpeech({"espeak-ng": espeak}, cache=TTSCache(tmp_path)) as tts:
        first, hit1 = asyncio.run(tts.asynthesize_speech("Good morning. How are you today?", "en"))
        second, hit2 = tts.synthesize_speech("Good morning. How are you today?", "en")
        faster, hit3 = asyncio.run(tts.asynthesize_speech("Good morning. How are you today?", "en", speed=1.5))
    assert (hit1, hit2, hit3) == (False, True, True)  # speed is applied after the cache
    np.testing.assert_array_equal(first.samples, second.samples)
    assert abs(faster.duration_s - first.duration_s / 1.5) < 0.01


def test_use_cache_false_bypasses_the_cache(espeak: EspeakEngine, tmp_path: Path) -> None:
    cache = TTSCache(tmp_path)
    tts = TextToSpeech({"espeak-ng": espeak}, cache=cache)
    for _ in range(2):
        assert tts.synthesize_speech("Baseline run.", "en", use_cache=False)[1] is False
    assert cache.stats()["total_requests"] == 0 and cache.stats()["cache_size"] == 0


def test_built_from_the_service_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.settings import Settings

    monkeypatch.setenv("TTS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TTS_MAX_CHARS", "77")
    with TextToSpeech.from_settings(Settings()) as tts:
        assert tts.max_chars == 77 and tts.cache is not None
        assert tts.cache.directory == (tmp_path / "cache").resolve()
        langs = tts.supported_languages()
        assert set(langs) == {"espeak-ng", "gtts"} and "ko" in langs["espeak-ng"] and "zh-CN" in langs["gtts"]


def test_failed_online_synthesis_caches_nothing(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path)
    tts = TextToSpeech({"gtts": GTTSEngine(f"http://127.0.0.1:{closed_port()}")}, default_engine="gtts", cache=cache)
    with pytest.raises(TTSUnavailableError):
        tts.synthesize_speech("hello", "en")
    assert cache.stats()["cache_size"] == 0 and list((tmp_path / "audio").iterdir()) == []


# ---- lipsync speak -----------------------------------------------------------------------------

def speak(argv: list[str], settings: object | None = None) -> int:
    parser = argparse.ArgumentParser()
    add_speak_arguments(parser)
    return run_speak(parser.parse_args(argv), settings or SimpleNamespace())


def test_speak_writes_a_wav(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hello.wav"
    from service.settings import Settings

    argv = ["--text", "안녕하세요", "--lang", "ko", "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    assert speak(argv, Settings()) == 0
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SR)
        assert 0.5 < w.getnframes() / SR < 3
    assert "synthesized" in capsys.readouterr().out
    assert speak(argv + ["--speed", "1.5"]) == 0
    assert "cache hit" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["--text", "  ", "--lang", "en"], 2, "empty"),
    (["--text", "hi", "--lang", "tlh"], 2, "supported codes"),
    (["--text", "hi", "--lang", "en", "--engine", "melotts"], 2, "unknown TTS engine"),
    (["--text", "hi", "--lang", "en", "--speed", "10"], 2, "speed"),
    (["--text", "hi", "--lang", "en", "--engine", "gtts"], 1, "TTS service unreachable"),
])
def test_speak_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int,
                      message: str) -> None:
    settings = SimpleNamespace(tts_gtts_url=f"http://127.0.0.1:{closed_port()}", tts_gtts_timeout_s=1.0)
    out = tmp_path / "x.wav"
    assert speak(argv + ["--out", str(out), "--no-cache"], settings) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_speak_refuses_bad_output_paths(tmp_path: Path) -> None:
    assert speak(["--text", "hi", "--lang", "en", "--out", str(tmp_path / "x.mp3")]) == 2
    assert speak(["--text", "hi", "--lang", "en", "--out", str(tmp_path / "nope" / "x.wav")]) == 2
