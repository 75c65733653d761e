"""Media safety (DESIGN §10): inputs are opened by content, with an allowlist of demuxers.

A playlist, concat list or text file must never make FFmpeg read a file the server holds,
whatever the input is called; real media works whatever it is called. Real files, real PyAV.
"""
from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest

from service.commands.cli import main
from service.errors import MediaError
from service.media import Format, VideoWriter, iter_frames, probe, read_audio, sniff, sniff_format

from .conftest import DATA
from .test_media import gradient_frames, make_video, tone, write_wav

FACE_REFUSED = (r"is not a video or image in a supported format \(it is {what}\); "
                r"give an mp4/mov, webm/mkv or avi video, or a jpg/png/bmp/webp image")
AUDIO_REFUSED = r"is not an audio file or video in a supported format \(it is {what}\)"


class OpenWatch:
    """What was opened or read in one folder (Linux inotify): proof that FFmpeg never touched
    the server file a refused input names."""

    _IN_ACCESS, _IN_OPEN = 0x001, 0x020

    def __init__(self, folder: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0 or libc.inotify_add_watch(self._fd, bytes(folder), self._IN_ACCESS | self._IN_OPEN) < 0:
            pytest.skip("inotify is not available here")

    def opened(self) -> set[str]:
        """Names opened or read since the last call."""
        names: set[str] = set()
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return names
            off = 0
            while off < len(data):
                _, _, _, size = struct.unpack_from("iIII", data, off)
                name = data[off + 16:off + 16 + size].rstrip(b"\0").decode()
                if name:
                    names.add(name)
                off += 16 + size

    def close(self) -> None:
        os.close(self._fd)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Server-local targets in ``secret/``, and inputs that name them."""
    root = tmp_path_factory.mktemp("safety")
    secret = root / "secret"
    secret.mkdir()
    frames = gradient_frames(10)
    ts = make_video(secret / "target.ts", frames, audio=tone(0.4, 44100))
    mp4 = make_video(secret / "target.mp4", frames, audio=tone(0.4, 44100))
    user = root / "user"
    user.mkdir()
    playlist = (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
                f"#EXTINF:0.4,\n{ts}\n#EXT-X-ENDLIST\n")
    hostile = {
        "playlist.m3u8": ("an HLS playlist", playlist),
        "playlist.mp4": ("an HLS playlist", playlist),
        "list.ffconcat": ("an ffconcat list", f"ffconcat version 1.0\nfile '{mp4}'\n"),
        "notes.txt": ("text", f"my notes\nsee {mp4}\n" * 20),
    }
    for name, (_, text) in hostile.items():
        (user / name).write_text(text)
    return SimpleNamespace(secret=secret, user=user, hostile={n: w for n, (w, _) in hostile.items()},
                           frames=frames, mp4=mp4)


@pytest.fixture
def watch(files: SimpleNamespace) -> Iterator[OpenWatch]:
    w = OpenWatch(files.secret)
    yield w
    w.close()


def test_unrestricted_ffmpeg_would_render_the_server_file(files: SimpleNamespace, watch: OpenWatch) -> None:
    """The attack is real: FFmpeg's own probing follows the playlist to the server's file."""
    with av.open(str(files.user / "playlist.m3u8")) as c:
        assert c.format.name == "hls" and next(c.decode(video=0)) is not None
    assert "target.ts" in watch.opened()


@pytest.mark.parametrize("name", ["playlist.m3u8", "playlist.mp4", "list.ffconcat", "notes.txt"])
def test_hostile_inputs_are_refused_unopened(files: SimpleNamespace, watch: OpenWatch, name: str) -> None:
    path, what = files.user / name, files.hostile[name]
    calls: list[tuple[Callable[[Path], object], str]] = [
        (probe, FACE_REFUSED), (lambda p: list(iter_frames(p)), FACE_REFUSED), (read_audio, AUDIO_REFUSED)]
    for call, refused in calls:
        with pytest.raises(MediaError, match=refused.format(what=what)) as e:
            call(path)
        assert "\n" not in str(e.value) and e.value.code == "unsupported_media"
    assert watch.opened() == set()  # not even opened to be refused


def test_real_media_works_whatever_its_name(files: SimpleNamespace, tmp_path: Path) -> None:
    want = list(iter_frames(files.mp4))
    for name in ("face.png", "face.bin", "face"):
        renamed = tmp_path / name
        renamed.write_bytes(files.mp4.read_bytes())
        info = probe(renamed)
        assert (info.kind, info.frame_count, info.has_audio) == ("video", 10, True)
        got = list(iter_frames(renamed))
        assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
        assert read_audio(renamed).samples.size > 0
    png = tmp_path / "face.png"
    assert cv2.imwrite(str(png), files.frames[0])
    disguised = tmp_path / "face.mp4"
    disguised.write_bytes(png.read_bytes())
    assert probe(disguised).kind == "image"
    np.testing.assert_array_equal(next(iter_frames(disguised)), files.frames[0])
    with pytest.raises(MediaError, match="has no audio track"):
        read_audio(disguised)


def test_audio_works_whatever_its_name(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav", tone(0.5, 16000), 16000)
    renamed = tmp_path / "voice.mp4"
    renamed.write_bytes(wav.read_bytes())
    np.testing.assert_array_equal(read_audio(renamed).samples, read_audio(wav).samples)
    with pytest.raises(MediaError, match=r"has no frames \(it is wav audio\)"):
        probe(renamed)
    # an mp3 without an ID3 tag starts at an MPEG frame header
    bare = _encode_audio(tmp_path / "bare.mp3", "libmp3lame", options={"id3v2_version": "0"})
    assert bare.read_bytes()[0] == 0xFF and sniff_format(bare) == sniff.MP3
    assert read_audio(bare).duration_s == pytest.approx(0.5, abs=0.08)
    # an ID3 tag in front of FLAC (some taggers write one): still FLAC
    flac = _encode_audio(tmp_path / "a.flac", "flac")
    tagged = tmp_path / "tagged.bin"
    tagged.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10) + flac.read_bytes())
    assert sniff_format(tagged) == sniff.FLAC
    np.testing.assert_array_equal(read_audio(tagged).samples, read_audio(flac).samples)


def test_a_name_that_looks_like_a_protocol_is_a_file(files: SimpleNamespace, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "concat:face.mp4").write_bytes(files.mp4.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert probe("concat:face.mp4").frame_count == 10


def _encode_audio(path: Path, codec: str, fmt: str | None = None, options: dict[str, str] | None = None) -> Path:
    rate = 48000
    with av.open(str(path), "w", format=fmt, options=options or {}) as c:
        stream = c.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(0.5, rate).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for p in [*stream.encode(frame), *stream.encode()]:
            c.mux(p)
    return path


def _encode_video(path: Path, codec: str, fmt: str | None = None) -> Path:
    with av.open(str(path), "w", format=fmt) as c:
        stream = c.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i, img in enumerate(gradient_frames(3, 64, 48)):
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            for p in stream.encode(frame):
                c.mux(p)
        for p in stream.encode():
            c.mux(p)
    return path


def test_sniff_recognises_the_allowlist(tmp_path: Path) -> None:
    image = gradient_frames(1, 32, 24)[0]
    for ext in ("jpg", "png", "bmp", "webp"):
        assert cv2.imwrite(str(tmp_path / f"i.{ext}"), image)
    made = {
        "v.mp4": sniff.MP4, "v.mov": sniff.MP4, "v.mkv": sniff.MATROSKA, "v.webm": sniff.MATROSKA,
        "v.avi": sniff.AVI, "a.wav": sniff.WAV, "a.mp3": sniff.MP3, "a.flac": sniff.FLAC, "a.ogg": sniff.OGG,
        "a.m4a": sniff.MP4, "i.jpg": sniff.JPEG, "i.png": sniff.PNG, "i.bmp": sniff.BMP, "i.webp": sniff.WEBP,
    }
    for name, codec in (("v.mp4", "libx264"), ("v.mov", "libx264"), ("v.mkv", "mpeg4"),
                        ("v.webm", "libvpx-vp9"), ("v.avi", "mpeg4")):
        _encode_video(tmp_path / name, codec)
    for name, codec in (("a.wav", "pcm_s16le"), ("a.mp3", "libmp3lame"), ("a.flac", "flac"),
                        ("a.ogg", "libopus"), ("a.m4a", "aac")):
        _encode_audio(tmp_path / name, codec)
    for name, fmt in made.items():
        disguised = tmp_path / f"{name}.m3u8"  # the name is never read
        disguised.write_bytes((tmp_path / name).read_bytes())
        assert sniff_format(disguised) == fmt, name
        if name.startswith("v."):
            assert probe(disguised).frame_count == 3
        elif name.startswith("a."):  # m4a included: an mp4 without a picture
            assert read_audio(disguised).duration_s == pytest.approx(0.5, abs=0.08)
        else:
            assert probe(disguised).kind == "image"


def test_quicktime_without_ftyp_is_mp4(tmp_path: Path) -> None:
    src = tmp_path / "v.mp4"
    with VideoWriter(src, 64, 48, 25) as w:  # faststart: ftyp, then moov
        w.write(np.stack(gradient_frames(3, 64, 48)))
    data = src.read_bytes()
    assert data[4:8] == b"ftyp"
    size = struct.unpack(">I", data[:4])[0]
    old = tmp_path / "old.mov"
    # ftyp turned into padding of the same size (chunk offsets are absolute): a file that starts
    # with a plain QuickTime atom, as QuickTime wrote before ftyp existed
    old.write_bytes(data[:4] + b"free" + bytes(size - 8) + data[size:])
    assert sniff_format(old) == sniff.MP4 and probe(old).frame_count == 3


@pytest.mark.parametrize("head,what", [
    (b"", "an empty file"),
    (b"\xef\xbb\xbf#EXTM3U\n#EXTINF:1,\n/etc/passwd\n", "an HLS playlist"),
    (b"ffconcat version 1.0\nfile '/etc/passwd'\n", "an ffconcat list"),
    (b"BMW owners' notes\n" * 4, "text"),
    (b"GIF89a\x20\x00\x18\x00\xf7\x00\x00" + bytes(50), "data of an unknown format"),
    (b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(50), "data of an unknown format"),  # AAC ADTS
    (b"RIFF\x24\x00\x00\x00CDXA" + bytes(50), "data of an unknown format"),
    ((b"G\x40\x00\x10" + bytes(184)) * 2, "an MPEG-TS stream"),
])
def test_sniff_refuses_the_rest(head: bytes, what: str) -> None:
    assert sniff.sniff_bytes(head) == Format(what, "unsupported")


def test_cli_face_playlist_exits_2_with_one_line(weights_dir: Path, files: SimpleNamespace, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mp4"
    for face, audio in ((files.user / "playlist.m3u8", DATA / "speech_dev.wav"),
                        (DATA / "face_dev.mp4", files.user / "playlist.m3u8")):
        code = main(["sync", "--wav2lip", str(weights_dir / "wav2lip_gan.pth"), "--device", "cpu",
                     "--no-progress", "--face", str(face), "--audio", str(audio), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "an HLS playlist" in err[0], err
    assert not out.exists()
