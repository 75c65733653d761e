"""Text preparation for TTS: normalisation and sentence segmentation for every customer language.

Pure functions. Boundaries: Latin-style ``. ! ?`` (and Devanagari ``।``, Arabic ``؟``, Urdu
``۔``) end a sentence only before whitespace or the end, so ``3.14`` and ``example.com`` stay
whole; CJK full stops ``。！？｡．`` and ``…`` end one wherever they stand, since Chinese and
Japanese put no space after them; a line break always ends one. Punctuation and closing quotes or
brackets stay with their sentence (``「はい。」`` is one sentence).
"""
from __future__ import annotations

import re
import unicodedata

DEFAULT_SEGMENT_CHARS = 200  # one engine call; espeak and gTTS both sound natural at this size
DEFAULT_MIN_CHARS = 12  # shorter pieces ("Mr.", "¡Sí!") are merged: a pause after them sounds wrong

_ALWAYS = "。！？｡．‼⁇⁈⁉…"
_SPACED = ".!?।؟۔"
_CLOSERS = "\"'”’»」』）)］]}】〕〉》"
_CLAUSE = ",，、;；:："
# A CJK character right after "!"/"?" ends a sentence even without a space (Japanese "本当!すごい").
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_END_RUN = re.compile(rf"[{re.escape(_ALWAYS + _SPACED)}]+[{re.escape(_CLOSERS)}]*")
_CLAUSE_RUN = re.compile(rf"[{re.escape(_CLAUSE)}]+[{re.escape(_CLOSERS)}]*")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
# Chinese and Japanese are written without spaces between words or sentences; Korean uses them.
_UNSPACED_CHAR = re.compile("[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\uff9f]")


def normalize_text(text: str) -> str:
    """NFC (Korean typed on macOS arrives decomposed), spaces collapsed within each line, empty
    lines dropped; line breaks are kept because they end sentences."""
    text = unicodedata.normalize("NFC", text)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, each with its end punctuation, stripped, none empty."""
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for m in _END_RUN.finditer(line):
            if _is_boundary(line, m):
                sentences.append(line[start:m.end()])
                start = m.end()
        sentences.append(line[start:])
    return [s.strip() for s in sentences if s.strip()]


def _is_boundary(line: str, m: re.Match[str]) -> bool:
    run, rest = m.group(), line[m.end():]
    if any(c in _ALWAYS for c in run) or not rest or rest[0].isspace():
        return True
    return bool(_CJK_CHAR.match(rest))


def split_long(sentence: str, max_chars: int) -> list[str]:
    """Cut a sentence longer than ``max_chars`` into pieces of at most ``max_chars``.

    Prefers the last clause mark (``, ， 、 ; :``) in reach, then the last space, and only cuts
    inside a word (unspaced CJK text) when neither exists past the first third of the window,
    which keeps pieces from getting needlessly short.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    pieces: list[str] = []
    rest = sentence.strip()
    while len(rest) > max_chars:
        window = rest[:max_chars + 1]
        floor = max_chars // 3
        cut = max((m.end() for m in _CLAUSE_RUN.finditer(window) if floor < m.end() <= max_chars), default=0)
        if not cut:
            cut = max((i for i, c in enumerate(window) if c.isspace() and i > floor), default=0)
        if not cut:
            cut = max_chars
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return [p for p in pieces if p]


def segment_text(text: str, max_chars: int = DEFAULT_SEGMENT_CHARS,
                 min_chars: int = DEFAULT_MIN_CHARS) -> list[str]:
    """The units the service synthesizes (concurrently, each cached): sentences, over-long ones
    cut by :func:`split_long`, and pieces shorter than ``min_chars`` merged into a neighbour
    while the result stays within ``max_chars``. Text order is kept."""
    pieces = [p for s in split_sentences(text) for p in split_long(s, max_chars)]
    merged: list[str] = []
    for piece in pieces:
        if merged and (len(merged[-1]) < min_chars or len(piece) < min_chars):
            joined = _join(merged[-1], piece)
            if len(joined) <= max_chars:
                merged[-1] = joined
                continue
        merged.append(piece)
    return merged


def _join(left: str, right: str) -> str:
    if _UNSPACED_CHAR.match(left[-1]) or _UNSPACED_CHAR.match(right[0]):
        return left + right
    return f"{left} {right}"
