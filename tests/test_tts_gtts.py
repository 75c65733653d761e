"""The gTTS engine (the gTTS package, unpatched) against a local HTTP fake of Google's endpoint.

The fake is the only stand-in: a real ``http.server`` on 127.0.0.1 answering the batchexecute
RPC the way translate.google.com does (``)]}'``-guarded JSON lines, the MP3 base64-encoded in
the ``wrb.fr`` envelope), reached through the engine's configurable base URL. The real Google
service is never called.
"""
from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import av
import numpy as np
import pytest
from gtts.lang import tts_langs

from service.errors import BadInputError, ServiceError
from service.tts import GTTSEngine, TextToSpeech, TTSUnavailableError, UnsupportedLanguageError
from tests.test_tts import SR, closed_port, peak_hz, rms, tone

BATCHEXECUTE = "/_/TranslateWebserverUi/data/batchexecute"  # Google's path, as gTTS 2.5 calls it
RPC_ID = "jQ1olc"


def make_mp3(freq: float = 440.0, seconds: float = 1.0, rate: int = 24000) -> bytes:
    """A small mono MP3 of a tone, encoded with PyAV's libmp3lame (gTTS answers 24 kHz mono MP3)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(freq, seconds, rate)[None, :], format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()


@dataclass
class FakeGoogle:
    url: str
    mode: str = "ok"  # ok | 500 | 429 | slow | no-payload | bad-mp3 | cut
    mp3: bytes = b""
    requests: list[dict[str, Any]] = field(default_factory=list)


def _answer(payload: str | None) -> bytes:
    """A batchexecute answer: an XSSI guard, then length-prefixed compact JSON lines."""
    envelope = [["wrb.fr", RPC_ID, payload, None, None, None, "generic"], ["di", 42]]
    line = json.dumps(envelope, separators=(",", ":"))
    return f")]}}'\n\n{len(line)}\n{line}\n25\n[[\"e\",4,null,null,100]]\n".encode()


@pytest.fixture()
def fake_google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    # gTTS sends through the environment's proxies and ignores NO_PROXY: a CI proxy would
    # otherwise swallow the requests meant for 127.0.0.1
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    fake = FakeGoogle(url="", mp3=make_mp3())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            if not self.path.endswith(BATCHEXECUTE):
                self.send_error(404)
                return
            rpc = json.loads(parse_qs(body)["f.req"][0])
            text, lang, _speed, _null = json.loads(rpc[0][0][1])
            fake.requests.append({"path": self.path, "text": text, "lang": lang, "rpc": rpc[0][0][0],
                                  "content_type": self.headers["Content-Type"]})
            if fake.mode in ("500", "429"):
                self.send_error(int(fake.mode))
                return
            if fake.mode == "slow":
                time.sleep(1.5)
            audio = b"ID3 this is not an mp3" * 20 if fake.mode == "bad-mp3" else fake.mp3
            payload = None if fake.mode == "no-payload" else json.dumps([base64.b64encode(audio).decode()])
            data = _answer(payload)
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                # "cut": the connection drops halfway through the promised body
                self.wfile.write(data[:len(data) // 2] if fake.mode == "cut" else data)
            except OSError:
                pass  # the client gave up (timeout test)
            if fake.mode == "cut":
                self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def test_request_and_decoded_audio(fake_google: FakeGoogle) -> None:
    engine = GTTSEngine(fake_google.url, timeout_s=5)
    audio = engine.synthesize("안녕하세요", "ko")
    [req] = fake_google.requests
    assert req["path"] == BATCHEXECUTE and req["rpc"] == RPC_ID
    assert (req["text"], req["lang"]) == ("안녕하세요", "ko")
    assert req["content_type"].startswith("application/x-www-form-urlencoded")
    assert audio.sample_rate == SR and audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert 0.95 < audio.duration_s < 1.15  # 1 s tone plus the MP3 codec's priming
    assert abs(peak_hz(audio.samples) - 440) < 5
    assert 0.15 < rms(audio.samples) < 0.25  # 0.3 amplitude sine: 0.21


def test_base_url_keeps_a_mirrors_path_prefix(fake_google: FakeGoogle) -> None:
    GTTSEngine(fake_google.url + "/google-mirror/").synthesize("hello", "en")
    assert fake_google.requests[-1]["path"] == "/google-mirror" + BATCHEXECUTE


def test_base_url_flows_from_the_settings(fake_google: FakeGoogle, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from service.settings import Settings

    monkeypatch.setenv("TTS_GTTS_URL", fake_google.url)
    monkeypatch.setenv("TTS_CACHE_DIR", str(tmp_path / "cache"))
    with TextToSpeech.from_settings(Settings()) as tts:
        audio, hit = tts.synthesize_speech("Hello there.", "en", engine="gtts")
    assert not hit and audio.duration_s > 0.9
    assert [r["text"] for r in fake_google.requests] == ["Hello there."]


def test_languages_come_from_the_package(fake_google: FakeGoogle) -> None:
    engine = GTTSEngine(fake_google.url)
    assert engine.languages() == set(tts_langs())
    assert engine.resolve_language("zh_cn") == "zh-CN" and engine.resolve_language("zh") == "zh"
    assert engine.resolve_language("en-US") == "en" and engine.resolve_language("he") == "iw"
    engine.synthesize("你好", "zh-cn")
    engine.synthesize("Olá", "pt-PT")  # gTTS's own lang_check would send "pt" (Brazilian)
    assert [r["lang"] for r in fake_google.requests] == ["zh-CN", "pt-PT"]


def test_unknown_language_lists_the_codes(fake_google: FakeGoogle) -> None:
    with pytest.raises(UnsupportedLanguageError) as info:
        GTTSEngine(fake_google.url).synthesize("hello", "tlh")
    assert "'tlh'" in str(info.value) and "zh-TW" in str(info.value) and " ko," in str(info.value)
    assert fake_google.requests == []


@pytest.mark.parametrize("text", [
    "This sentence is long enough, with commas, and words, to need several requests. " * 3,
    "words without any punctuation at all " * 8,
])
def test_long_text_goes_out_in_requests_of_at_most_100_chars(fake_google: FakeGoogle, text: str) -> None:
    audio = GTTSEngine(fake_google.url).synthesize(text.strip(), "en")
    chunks = [r["text"] for r in fake_google.requests]
    assert len(chunks) >= 3 and all(len(c) <= 100 for c in chunks)
    # gTTS cuts at punctuation and drops it; the words all go out, in order
    assert re.findall(r"\w+", " ".join(chunks)) == re.findall(r"\w+", text)
    assert audio.duration_s > 0.95 * len(chunks)  # one 1 s answer per request, decoded and joined


@pytest.mark.parametrize("mode", ["refused", "500", "429", "slow", "no-payload", "bad-mp3", "cut"])
def test_failures_are_tts_unavailable(fake_google: FakeGoogle, mode: str) -> None:
    fake_google.mode = mode
    url = f"http://127.0.0.1:{closed_port()}" if mode == "refused" else fake_google.url
    engine = GTTSEngine(url, timeout_s=0.3)
    t0 = time.perf_counter()
    with pytest.raises(TTSUnavailableError) as info:
        engine.synthesize("hello", "en")
    assert time.perf_counter() - t0 < 1.2  # the timeout holds
    assert str(info.value).startswith("TTS service unreachable: ")
    assert isinstance(info.value, ServiceError) and not isinstance(info.value, BadInputError)
    expected = {"refused": "cannot connect", "500": "HTTP 500", "429": "rate limited",
                "slow": "within 0.3 s", "no-payload": "malformed", "bad-mp3": "cannot be decoded",
                "cut": "connection to"}
    assert expected[mode] in str(info.value)


def test_unresolvable_host_is_tts_unavailable() -> None:
    with pytest.raises(TTSUnavailableError, match="cannot connect"):
        GTTSEngine("http://no-such-host.invalid", timeout_s=2).synthesize("hello", "en")


def test_text_with_nothing_to_speak_is_bad_input(fake_google: FakeGoogle) -> None:
    with pytest.raises(BadInputError, match="nothing to speak"):
        GTTSEngine(fake_google.url).synthesize("?!…", "en")
    assert fake_google.requests == []
