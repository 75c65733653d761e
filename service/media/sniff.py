"""What a media file is, decided from its first bytes: the allowlist of formats the service opens.

A file's name says nothing about what FFmpeg will do with it. Left to probe, FFmpeg picks
demuxers that follow paths written inside the file (``hls`` playlists, ``concat``/``ffconcat``
lists), render text as video (``tty``) or expand file-name patterns (``image2``), so a user's
``.m3u8`` object could make the service read the server's own files. Inputs are therefore
recognised here from magic bytes only, and opened with exactly the demuxer this module names
(see :func:`service.media.containers.open_input`). Anything not recognised is unsupported.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

PathLike = str | os.PathLike[str]

FormatKind = Literal["video", "audio", "image", "unsupported"]

# enough for every signature below and for telling text from binary in error messages
_HEAD_BYTES = 512
_ID3_HEADER = 10  # "ID3", version (2), flags (1), syncsafe size (4)


@dataclass(frozen=True)
class Format:
    """A file's format, as :func:`sniff_format` recognised it.

    ``kind`` is "video" for a container that can hold pictures and sound (an mp4 may also be
    an audio-only m4a: only opening it tells), "audio", "image" (decoded with OpenCV) or
    "unsupported". ``demuxer`` is the FFmpeg demuxer to force with ``av.open(format=...)``,
    None for images and unsupported files. ``name`` is what error messages call it: the
    format ("mp4/mov", "wav") or, when unsupported, what the content looks like ("an HLS
    playlist", "text").
    """

    name: str
    kind: FormatKind
    demuxer: str | None = None


MP4 = Format("mp4/mov", "video", "mov")  # FFmpeg's one demuxer for ISO BMFF and QuickTime
MATROSKA = Format("webm/mkv", "video", "matroska")
AVI = Format("avi", "video", "avi")
WAV = Format("wav", "audio", "wav")
MP3 = Format("mp3", "audio", "mp3")
FLAC = Format("flac", "audio", "flac")
OGG = Format("ogg", "audio", "ogg")
JPEG = Format("jpeg", "image")
PNG = Format("png", "image")
BMP = Format("bmp", "image")
WEBP = Format("webp", "image")

_RIFF_FORMS = {b"AVI ": AVI, b"WAVE": WAV, b"WEBP": WEBP}
# "BM" alone is two letters of text: the DIB header that follows has one of these sizes
_BMP_INFO_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

# First box types of a QuickTime file written before ISO BMFF's "ftyp" existed.
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})


def sniff_format(path: PathLike) -> Format:
    """The format of the file at ``path``, from its content alone (never its name).

    Recognised: mp4/mov/m4v/m4a (ISO BMFF ``ftyp`` or a QuickTime atom), webm/mkv (EBML), avi
    (RIFF AVI), wav (RIFF/RF64 WAVE), mp3 (ID3 tag or MPEG audio frame sync), flac, ogg, and
    the still images jpeg, png, bmp and webp. Everything else is a Format of kind
    "unsupported" whose ``name`` describes the content. Raises ``OSError`` if the file cannot
    be read.
    """
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
        if head.startswith(b"ID3") and len(head) >= _ID3_HEADER:
            # an ID3v2 tag (mp3 metadata, sometimes album art) can also precede FLAC
            f.seek(_id3_size(head))
            return FLAC if f.read(4) == b"fLaC" else MP3
    return sniff_bytes(head)


def sniff_bytes(head: bytes) -> Format:
    """:func:`sniff_format` for a file's first bytes (512 are enough; ID3 tags not skipped)."""
    box = head[4:8]
    if box == b"ftyp" or box in _QUICKTIME_ATOMS:
        return MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MATROSKA
    riff, form = head[:4], head[8:12]
    if riff == b"RIFF" and form in _RIFF_FORMS:
        return _RIFF_FORMS[form]
    if riff in (b"RIFX", b"RF64") and form == b"WAVE":  # big-endian and 64-bit wav
        return WAV
    if head.startswith(b"fLaC"):
        return FLAC
    if head.startswith(b"OggS"):
        return OGG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_INFO_SIZES:
        return BMP
    if head.startswith(b"ID3") or _mpeg_audio_sync(head):
        return MP3
    return _unsupported(head)


def _id3_size(head: bytes) -> int:
    """Bytes from the file start to the end of the ID3v2 tag (header, body, optional footer)."""
    body = 0
    for byte in head[6:10]:
        body = (body << 7) | (byte & 0x7F)  # "syncsafe": 7 bits per byte
    footer = _ID3_HEADER if head[5] & 0x10 else 0
    return _ID3_HEADER + body + footer


def _mpeg_audio_sync(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, then no reserved version, layer, bitrate or rate.

    The layer check keeps out AAC ADTS (same sync, layer 0), which the allowlist does not take.
    """
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 0b11
    return version != 0b01 and layer != 0b00 and bitrate != 0b1111 and rate != 0b11


def _unsupported(head: bytes) -> Format:
    """Say what the content looks like, so an error tells the user what they actually sent."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if not head:
        name = "an empty file"
    elif text.startswith(b"#EXTM3U"):
        name = "an HLS playlist"
    elif text.startswith(b"ffconcat"):
        name = "an ffconcat list"
    elif head.startswith(b"G") and len(head) > 188 and head[188] == 0x47:
        name = "an MPEG-TS stream"
    elif _looks_like_text(head):
        name = "text"
    else:
        name = "data of an unknown format"
    return Format(name, "unsupported")


def _looks_like_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not just a character cut at the end of the sample
            return False
        decoded = head[:e.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n\f" for c in decoded)
