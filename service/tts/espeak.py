"""The offline engine: the system's ``espeak-ng`` (Debian package), run as a subprocess.

Voices come from ``espeak-ng --voices`` on this machine, so :meth:`EspeakEngine.languages` lists
exactly what the installed data can speak (mbrola voices are skipped: they need extra packages).
"""
from __future__ import annotations

import logging
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import BadInputError, MediaError
from service.media import read_audio
from service.types import Audio

from .base import TTS_SAMPLE_RATE, match_language, reject_unknown_params
from .errors import TTSError

log = logging.getLogger(__name__)

DEFAULT_RATE_WPM = 175  # espeak-ng's own default speaking rate
DEFAULT_PITCH = 50  # espeak-ng's default, on its 0..99 scale
RATE_RANGE_WPM = (80, 450)  # what espeak-ng accepts for -s
PITCH_RANGE = (0, 99)
PROBE_TIMEOUT_S = 30.0

# Where espeak's own priorities pick another dialect than the customer's engine (gTTS) speaks
# for the bare code: gTTS "en" is US English, "pt" Brazilian. Used only when that voice exists.
_PREFERRED_VOICE = {"en": "en-us", "pt": "pt-br"}
# Codes customers send that espeak spells differently (gTTS's "iw" Hebrew, "zh-CN" Mandarin...).
_ALIASES = {"zh-cn": "zh", "zh-tw": "zh", "zh-hans": "zh", "zh-hant": "zh", "zh-hk": "yue",
            "iw": "he", "no": "nb"}
_OTHER_LANG = re.compile(r"\(([^\s()]+)\s+(\d+)\)")
_VERSION = re.compile(r"text-to-speech:\s*(\S+)")


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice: ``ident`` is what ``-v`` takes (its data file, unique)."""

    ident: str
    language: str
    name: str


def parse_voices(listing: str) -> dict[str, Voice]:
    """``espeak-ng --voices`` output -> {lower-case language code: best voice for it}.

    A voice serves its own language and the "other languages" listed as ``(code priority)``;
    for each code the lowest priority number wins (espeak's own choice), then
    :data:`_PREFERRED_VOICE` overrides it where the customer's engine speaks another dialect.
    """
    best: dict[str, tuple[int, int, Voice]] = {}
    for order, line in enumerate(listing.splitlines()[1:]):  # first line is the header
        parts = line.split()
        if len(parts) < 5 or not parts[0].isdigit():
            continue
        pty, language, _age, name, ident = parts[:5]
        if ident.startswith("mb/"):
            continue  # mbrola voices need the mbrola binary and its databases
        voice = Voice(ident=ident, language=language.lower(), name=name)
        claims = [(language.lower(), int(pty))]
        claims += [(code.lower(), int(p)) for code, p in _OTHER_LANG.findall(" ".join(parts[5:]))]
        for code, priority in claims:
            if code not in best or (priority, order) < best[code][:2]:
                best[code] = (priority, order, voice)
    table = {code: v for code, (_p, _o, v) in best.items()}
    for code, preferred in _PREFERRED_VOICE.items():
        match = next((v for v in table.values() if v.language == preferred), None)
        if code in table and match is not None:
            table[code] = match
    return table


class EspeakEngine:
    """``espeak-ng`` behind :class:`~service.tts.base.TTSEngine`.

    Parameters per call: ``rate_wpm`` (words per minute, 80..450) and ``pitch`` (0..99); the
    constructor's values are the defaults. Each call runs one process with an argv list (no
    shell) in its own temporary folder, removed afterwards; the text goes through a UTF-8 file,
    so any text (leading ``-``, quotes, ``<``) is spoken literally and argv length never limits
    it. ``-z`` drops espeak's 0.3 s end-of-text pause: the service adds its own between segments.
    """

    name = "espeak-ng"

    def __init__(self, binary: str = "espeak-ng", *, rate_wpm: int = DEFAULT_RATE_WPM,
                 pitch: int = DEFAULT_PITCH, timeout_s: float = 60.0) -> None:
        self.binary = binary
        self.timeout_s = timeout_s
        self.default_rate_wpm, self.default_pitch = _check_params(rate_wpm, pitch)
        self._lock = threading.Lock()
        self._voices: dict[str, Voice] | None = None
        self._version = ""

    def _probe(self) -> dict[str, Voice]:
        with self._lock:
            if self._voices is None:
                listing = self._run([self.binary, "--voices"]).stdout.decode("utf-8", "replace")
                version = self._run([self.binary, "--version"]).stdout.decode("utf-8", "replace")
                found = _VERSION.search(version)  # "eSpeak NG text-to-speech: 1.51  Data at: ..."
                self._version = found.group(1) if found else version.strip()
                self._voices = parse_voices(listing)
                if not self._voices:
                    raise TTSError(f"{self.binary} --voices listed no voices; reinstall espeak-ng-data")
                log.debug("%s: %d language codes (%s)", self.binary, len(self._voices), self._version)
            return self._voices

    def languages(self) -> set[str]:
        return set(self._probe())

    def resolve_language(self, lang: str) -> str:
        voices = self._probe()
        aliases = {k: v for k, v in _ALIASES.items() if v in voices}
        return match_language(lang, self.name, {c: c for c in voices}, aliases)

    def cache_fields(self, lang: str, **params: Any) -> dict[str, Any]:
        rate, pitch = self._params(params)
        voice = self._probe()[self.resolve_language(lang)]
        return {"voice": voice.ident, "rate_wpm": rate, "pitch": pitch, "version": self._version}

    def synthesize(self, text: str, lang: str, **params: Any) -> Audio:
        """Speak ``text`` with the voice for ``lang``; float32 [N] at 16 kHz (espeak's 22.05 kHz
        PCM16 resampled by swresample, not clipped)."""
        rate, pitch = self._params(params)
        voice = self._probe()[self.resolve_language(lang)]
        with tempfile.TemporaryDirectory(prefix="lipsync-espeak-") as tmp:
            text_file, wav = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
            text_file.write_text(text, encoding="utf-8")
            self._run([self.binary, "-v", voice.ident, "-s", str(rate), "-p", str(pitch), "-z",
                       "-b", "1", "-f", str(text_file), "-w", str(wav)])
            try:
                audio = read_audio(wav, TTS_SAMPLE_RATE)
            except MediaError as e:
                raise TTSError(f"espeak-ng ({voice.ident}) wrote no usable audio for {len(text)} "
                               f"characters of text: {e}") from e
        log.debug("espeak-ng %s: %d chars -> %.2f s", voice.ident, len(text), audio.duration_s)
        return audio

    def _params(self, params: dict[str, Any]) -> tuple[int, int]:
        reject_unknown_params(self.name, params, {"rate_wpm", "pitch"})
        return _check_params(params.get("rate_wpm", self.default_rate_wpm),
                             params.get("pitch", self.default_pitch))

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=self.timeout_s, check=False)
        except FileNotFoundError as e:
            raise TTSError(f"{self.binary} is not installed or not on PATH; install the Debian "
                           "package espeak-ng (or choose another TTS engine)") from e
        except subprocess.TimeoutExpired as e:
            raise TTSError(f"{self.binary} did not finish within {self.timeout_s:g} s") from e
        if proc.returncode != 0:
            err = " ".join(proc.stderr.decode("utf-8", "replace").split()) or "no message"
            raise TTSError(f"{self.binary} failed (exit {proc.returncode}): {err}")
        return proc


def _check_params(rate_wpm: Any, pitch: Any) -> tuple[int, int]:
    for label, value, (lo, hi) in (("rate_wpm", rate_wpm, RATE_RANGE_WPM), ("pitch", pitch, PITCH_RANGE)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise BadInputError(f"espeak-ng {label} must be an integer in {lo}..{hi}, got {value!r}")
    return rate_wpm, pitch
