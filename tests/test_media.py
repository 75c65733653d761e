"""Media I/O against real PyAV/FFmpeg: media is generated here, tiny, with PyAV itself."""
from __future__ import annotations

import gc
import struct
import wave
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import av
import cv2
import numpy as np
import pytest
from av.audio.stream import AudioStream

from service.errors import MediaError
from service.media import (
    MediaInfo,
    VideoWriter,
    as_frame_rate,
    choose_encoder,
    ensure_writable,
    iter_frames,
    nvenc_available,
    probe,
    read_audio,
    read_frame,
)
from service.media.orientation import clockwise_rotation
from service.types import Audio

DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------- generated media

def gradient_frames(n: int, width: int = 160, height: int = 120) -> list[np.ndarray]:
    """Smooth BGR gradients that move with the frame index, so every frame differs."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(n):
        b = 40 + 150 * x / width + 3 * i
        g = 40 + 150 * y / height
        r = 128 + 60 * np.sin((x + 4 * i) / width * np.pi)
        frames.append(np.clip(np.stack([b, g, r], axis=-1), 0, 255).astype(np.uint8))
    return frames


def tone(seconds: float, rate: int, hz: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def make_video(path: Path, frames: list[np.ndarray], fps: int = 25, audio: np.ndarray | None = None,
               audio_rate: int = 44100, rotation: int = 0) -> Path:
    """H.264 qp 0 (lossless in YUV) video, optional AAC mono track, optional display matrix."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps, options={"qp": "0", "preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        if rotation:
            v.set_display_rotation(rotation)  # counter-clockwise, as frame.rotation reads back
        a = c.add_stream("aac", rate=audio_rate, layout="mono") if audio is not None else None
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None and audio is not None:
            af = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
            af.sample_rate, af.pts = audio_rate, 0
            for p in a.encode(af):
                c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """PCM16 wav; ``samples`` float [N] (mono) or [N, C]."""
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def top_level_boxes(path: Path) -> list[str]:
    """The mp4's top-level box types in file order."""
    data, off, boxes = path.read_bytes(), 0, []
    while off + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[off:off + 8])
        if size == 1:
            size = struct.unpack(">Q", data[off + 8:off + 16])[0]
        boxes.append(kind.decode("latin1"))
        if size == 0:
            break
        off += size
    return boxes


def bt601_yuv420(bgr: np.ndarray) -> list[np.ndarray]:
    """Exact (float) BT.601 limited-range Y [H, W] and 2x2-mean Cb, Cr [H/2, W/2] of a BGR image."""
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape
    return [y] + [c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) for c in (cb, cr)]


def yuv420_planes(frame: av.VideoFrame) -> list[np.ndarray]:
    flat = frame.to_ndarray().astype(np.float64).reshape(-1)  # yuv420p: Y, then U, then V
    h, w = frame.height, frame.width
    n, c = h * w, (h // 2) * (w // 2)
    return [flat[:n].reshape(h, w), flat[n:n + c].reshape(h // 2, w // 2),
            flat[n + c:n + 2 * c].reshape(h // 2, w // 2)]


def decode_all(path: Path) -> tuple[av.video.stream.VideoStream, list[av.VideoFrame], int]:
    """Video stream info, the video frames, and the decoded audio sample count."""
    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.video[0]))
        c.seek(0)
        samples = sum(f.samples for f in c.decode(c.streams.audio[0])) if c.streams.audio else 0
        return c.streams.video[0], frames, samples


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("media")
    frames = gradient_frames(30)
    marker = np.zeros((48, 64, 3), np.uint8)
    marker[:8, :8] = 255  # bright block in the stored top-left corner
    return SimpleNamespace(
        frames=frames,
        video=make_video(d / "clip.mp4", frames, audio=tone(1.2, 44100), audio_rate=44100),
        silent=make_video(d / "silent.mp4", frames[:10]),
        mkv=make_video(d / "clip.mkv", frames[:20]),
        rot_ccw90=make_video(d / "rot90.mp4", [marker] * 3, rotation=90),
        rot_cw90=make_video(d / "rot270.mp4", [marker] * 3, rotation=-90),
        rot180=make_video(d / "rot180.mp4", [marker] * 3, rotation=180),
        wav=write_wav(d / "tone.wav", tone(1.0, 44100, hz=1000), 44100),
        dir=d,
    )


# --------------------------------------------------------------------------- probe

def test_probe_video_fields(media: SimpleNamespace) -> None:
    info = probe(media.video)
    assert isinstance(info, MediaInfo)
    assert (info.kind, info.width, info.height) == ("video", 160, 120)
    assert info.fps == 25.0 and info.frame_rate == Fraction(25)
    assert info.frame_count == 30
    assert info.duration_s == pytest.approx(1.2, abs=0.05)
    assert info.rotation == 0
    assert info.has_audio and info.audio_sample_rate == 44100
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")


def test_probe_silent_and_matroska_frame_count(media: SimpleNamespace) -> None:
    silent = probe(media.silent)
    assert not silent.has_audio and silent.audio_sample_rate is None and silent.frame_count == 10
    # Matroska stores no frame count: estimated from duration x fps
    assert probe(media.mkv).frame_count == 20


def test_probe_image(tmp_path: Path) -> None:
    bgra = np.dstack([gradient_frames(1, 33, 21)[0], np.full((21, 33), 128, np.uint8)])
    path = tmp_path / "face.png"
    assert cv2.imwrite(str(path), bgra)
    info = probe(path)
    assert (info.kind, info.width, info.height, info.frame_count) == ("image", 33, 21, 1)
    assert info.fps is None and info.duration_s is None and not info.has_audio
    (frame,) = list(iter_frames(path))
    np.testing.assert_array_equal(frame, bgra[..., :3])  # alpha dropped, as cv2.imread
    assert next(iter_frames(path, resize_factor=2)).shape == (10, 16, 3)
    assert list(iter_frames(path, start=1)) == []


# --------------------------------------------------------------------------- frames

def test_frames_roundtrip(media: SimpleNamespace) -> None:
    frames = list(iter_frames(media.video))
    assert len(frames) == 30
    capture = cv2.VideoCapture(str(media.video))
    for got, want in zip(frames, media.frames):
        assert got.dtype == np.uint8 and got.shape == (120, 160, 3) and got.flags.c_contiguous
        ok, cv_frame = capture.read()
        assert ok and np.array_equal(got, cv_frame)  # what the official code reads
        # lossless H.264, so only swscale's BGR<->yuv420p rounding and chroma subsampling remain
        diff = np.abs(got.astype(int) - want)
        assert diff.mean() < 3 and diff.max() <= 12
    assert not capture.read()[0]
    assert not np.array_equal(frames[0], frames[1])


def test_start_stop_and_read_frame(media: SimpleNamespace) -> None:
    frames = list(iter_frames(media.video))
    part = list(iter_frames(media.video, start=5, stop=9))
    assert len(part) == 4
    for got, want in zip(part, frames[5:9]):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(read_frame(media.video, 29), frames[29])
    with pytest.raises(IndexError):
        read_frame(media.video, 30)
    assert list(iter_frames(media.video, start=40)) == []


def test_resize_factor_as_official(media: SimpleNamespace) -> None:
    full = next(iter_frames(media.video))
    small = next(iter_frames(media.video, resize_factor=3))
    assert small.shape == (40, 53, 3)
    np.testing.assert_array_equal(small, cv2.resize(full, (160 // 3, 120 // 3)))


@pytest.mark.parametrize("name,clockwise,corner", [
    ("rot_ccw90", 270, "bottom-left"),
    ("rot_cw90", 90, "top-right"),
    ("rot180", 180, "bottom-right"),
])
def test_rotation_honoured(media: SimpleNamespace, name: str, clockwise: int, corner: str) -> None:
    path = getattr(media, name)
    info = probe(path)
    assert info.rotation == clockwise
    frame = next(iter_frames(path))
    assert frame.shape[:2] == (info.height, info.width)
    assert (info.width, info.height) == ((48, 64) if clockwise in (90, 270) else (64, 48))
    ys, xs = np.nonzero(frame[..., 0] > 128)
    h, w = frame.shape[:2]
    where = ("top" if ys.mean() < h / 2 else "bottom") + "-" + ("left" if xs.mean() < w / 2 else "right")
    assert where == corner
    ok, cv_frame = cv2.VideoCapture(str(path)).read()  # OpenCV's FFmpeg backend autorotates too
    assert ok and np.array_equal(frame, cv_frame)


def test_rotation_sources() -> None:
    assert clockwise_rotation(0, "90") == 90  # legacy tag, already clockwise
    assert clockwise_rotation(-90) == 90 and clockwise_rotation(90) == 270  # matrix: counter-clockwise
    assert clockwise_rotation(-180) == 180 and clockwise_rotation(None) == 0
    assert clockwise_rotation(45) == 0  # not a right angle: left alone, as FFmpeg does
    assert clockwise_rotation(89.6) == 270


# --------------------------------------------------------------------------- audio

def test_read_audio_reference_wav_is_exact() -> None:
    path = DATA / "speech_dev.wav"
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    audio = read_audio(path)
    assert audio.sample_rate == 16000 and audio.samples.dtype == np.float32
    assert audio.samples.shape == (47770,)
    np.testing.assert_array_equal(audio.samples, pcm.astype(np.float32) / 32768)  # librosa.load


def test_read_audio_resamples_keeping_length_and_pitch(media: SimpleNamespace) -> None:
    audio = read_audio(media.wav, sample_rate=16000)
    assert audio.samples.shape == (16000,)  # round(44100 * 16000 / 44100)
    spectrum = np.abs(np.fft.rfft(audio.samples * np.hanning(16000)))
    assert np.argmax(spectrum) == pytest.approx(1000, abs=1)  # 1 Hz bins
    assert np.abs(audio.samples).max() == pytest.approx(0.5, abs=0.02)


def test_read_audio_averages_channels(tmp_path: Path) -> None:
    left = tone(0.5, 16000)
    stereo = write_wav(tmp_path / "st.wav", np.stack([left, np.zeros_like(left)], axis=1), 16000)
    both = write_wav(tmp_path / "both.wav", np.stack([left, left], axis=1), 16000)
    np.testing.assert_allclose(read_audio(stereo).samples, read_audio(both).samples / 2, atol=1e-4)
    assert np.abs(read_audio(both).samples).max() == pytest.approx(0.5, abs=1e-3)  # mean, not sum


@pytest.mark.parametrize("suffix,codec,rate", [
    ("mp3", "libmp3lame", 22050), ("m4a", "aac", 48000), ("ogg", "libopus", 48000), ("flac", "flac", 8000),
])
def test_read_audio_containers(tmp_path: Path, suffix: str, codec: str, rate: int) -> None:
    path = tmp_path / f"speech.{suffix}"
    with av.open(str(path), "w") as c:
        stream = cast(AudioStream, c.add_stream(codec, rate=rate, layout="stereo"))
        samples = np.stack([tone(0.5, rate, hz=300)] * 2)
        # PyAV converts to each encoder's own sample format and frame size
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        for p in stream.encode(frame):
            c.mux(p)
        for p in stream.encode():
            c.mux(p)
    audio = read_audio(path)
    assert abs(audio.duration_s - 0.5) < 0.08  # codec padding, at most a frame or two
    spectrum = np.abs(np.fft.rfft(audio.samples[:4000] * np.hanning(4000)))
    assert np.argmax(spectrum) * 16000 / 4000 == pytest.approx(300, abs=4)


def test_read_audio_from_video_aac(media: SimpleNamespace) -> None:
    audio = read_audio(media.video)
    assert audio.sample_rate == 16000
    assert abs(audio.samples.shape[0] - 1.2 * 16000) < 1024  # AAC ends on a 1024-sample frame
    spectrum = np.abs(np.fft.rfft(audio.samples[:16000] * np.hanning(16000)))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)


# --------------------------------------------------------------------------- writer

def test_writer_output_is_h264_aac_faststart(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    frames = gradient_frames(20, 64, 48)
    speech = Audio(tone(1.0, 16000), 16000)  # longer than the 0.8 s of video
    with VideoWriter(out, 64, 48, 25, audio=speech, crf=0, exact_colour=True) as writer:
        writer.write(frames[:5])
        for f in frames[5:]:
            writer.write(f)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    stream, decoded, audio_samples = decode_all(out)
    assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    assert stream.average_rate == 25 and len(decoded) == 20
    assert audio_samples >= 48000  # the whole second of audio, at 48 kHz
    info = probe(out)
    assert info.audio_codec == "aac" and info.audio_sample_rate == 48000 and info.frame_count == 20
    with av.open(str(out)) as c:
        assert c.duration is not None and c.duration / av.time_base == pytest.approx(1.0, abs=0.03)
    assert read_audio(out).duration_s == pytest.approx(1.0, abs=0.07)
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart
    # crf 0 is lossless: the stored planes are exactly BT.601 limited range of the input
    for frame, bgr in zip(decoded, frames):
        for plane, want in zip(yuv420_planes(frame), bt601_yuv420(bgr)):
            # swscale's fixed point: rounding plus a few hundredths, and no bias
            assert np.abs(plane - want).max() < 0.6 and abs((plane - want).mean()) < 0.05
    got = list(iter_frames(out))
    assert max(np.abs(g.astype(int) - f).mean() for g, f in zip(got, frames)) < 2.5


def test_writer_default_colour_is_close(tmp_path: Path) -> None:
    out = tmp_path / "fast.mp4"
    frames = gradient_frames(2, 64, 48)
    with VideoWriter(out, 64, 48, 25, crf=0) as writer:
        writer.write(frames)
    _, decoded, _ = decode_all(out)
    for plane, want in zip(yuv420_planes(decoded[0]), bt601_yuv420(frames[0])):
        assert np.abs(plane - want).max() < 1.6 and abs((plane - want).mean()) < 0.6  # truncation


def test_writer_ntsc_rate_is_constant(tmp_path: Path) -> None:
    out = tmp_path / "ntsc.mp4"
    with VideoWriter(out, 64, 48, 29.97) as writer:
        writer.write(np.stack(gradient_frames(12, 64, 48)))
    stream, decoded, _ = decode_all(out)
    assert stream.average_rate == Fraction(30000, 1001) and len(decoded) == 12
    assert set(np.diff([f.pts for f in decoded]) * stream.time_base) == {Fraction(1001, 30000)}


def test_writer_crops_odd_sizes(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    frames = gradient_frames(4, 65, 47)
    with VideoWriter(out, 65, 47, 25, crf=0) as writer:
        writer.write(frames)
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (64, 46, 4)
    _, decoded, _ = decode_all(out)
    for plane, want in zip(yuv420_planes(decoded[0]), bt601_yuv420(frames[0][:46, :64])):
        assert np.abs(plane - want).max() < 1.6  # the crop, not a rescale


def test_writer_leaves_nothing_after_exception_abort_or_gc(tmp_path: Path) -> None:
    frame = gradient_frames(1, 64, 48)[0]
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "a.mp4", 64, 48, 25) as writer:
        writer.write(frame)
        raise RuntimeError("inference failed")
    writer = VideoWriter(tmp_path / "b.mp4", 64, 48, 25)
    writer.write(frame)
    writer.abort()
    writer.abort()  # idempotent
    with pytest.raises(ValueError):
        writer.write(frame)
    writer = VideoWriter(tmp_path / "c.mp4", 64, 48, 25)
    writer.write(frame)
    del writer
    gc.collect()
    with pytest.raises(ValueError, match="no frames"), VideoWriter(tmp_path / "d.mp4", 64, 48, 25):
        pass
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_wrong_frames(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "x.mp4", 64, 48, 25) as writer:
        with pytest.raises(ValueError, match="expected BGR uint8"):
            writer.write(np.zeros((48, 64), np.uint8))
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert probe(tmp_path / "x.mp4").frame_count == 1


def test_encoder_choice() -> None:
    chosen = choose_encoder("auto")
    assert chosen == ("h264_nvenc" if nvenc_available() else "libx264")
    assert choose_encoder("libx264") == "libx264"
    with pytest.raises(ValueError):
        choose_encoder("h265")


def test_frame_rates() -> None:
    assert as_frame_rate(29.97) == Fraction(30000, 1001)
    assert as_frame_rate(23.976) == Fraction(24000, 1001)
    assert as_frame_rate(25) == 25 and as_frame_rate(12.5) == Fraction(25, 2)
    assert as_frame_rate(Fraction(2997, 100)) == Fraction(2997, 100)


# --------------------------------------------------------------------------- bad input

def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    for call in (probe, read_audio, iter_frames):
        with pytest.raises(MediaError, match="does not exist"):
            call(missing)


def test_not_media(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    for call in (probe, iter_frames):
        with pytest.raises(MediaError, match="is not a video or image"):
            call(fake)
    with pytest.raises(MediaError, match="notes.mp4 is not an audio file"):
        read_audio(fake)
    png = tmp_path / "face.png"
    png.write_text("nope")
    with pytest.raises(MediaError, match="is not a video or image"):
        probe(png)


def test_audio_only_as_video(media: SimpleNamespace) -> None:
    for call in (probe, iter_frames):
        with pytest.raises(MediaError, match="has no frames"):
            call(media.wav)


def test_video_without_audio(media: SimpleNamespace) -> None:
    with pytest.raises(MediaError, match="has no audio track"):
        read_audio(media.silent)


def test_empty_audio(tmp_path: Path) -> None:
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(MediaError, match="empty audio track"):
        read_audio(empty)


def test_output_folder_missing(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "out.mp4"
    with pytest.raises(MediaError, match="output path .* is not writable: folder .* does not exist"):
        ensure_writable(out)
    with pytest.raises(MediaError, match="is not writable"):
        VideoWriter(out, 64, 48, 25)
    with pytest.raises(MediaError, match="is a folder"):
        ensure_writable(tmp_path)
    assert ensure_writable(tmp_path / "ok.mp4") == tmp_path / "ok.mp4"


def test_write_over_takes_only_even_patches_inside_the_frame(tmp_path: Path) -> None:
    """A frame written as a converted base plus a patch: the patch must sit on the 2x2 chroma
    grid (odd offsets or sizes would mix converted and unconverted pixels in one chroma
    sample) and inside the frame; a refused patch leaves no output behind."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    out = tmp_path / "over.mp4"
    with VideoWriter(out, 96, 64, 25, codec="libx264") as writer:
        base = writer.to_yuv(image)
        assert (base.y.shape, base.u.shape, base.v.shape) == ((64, 96), (32, 48), (32, 48))
        for patch, top, left in [(image[:10, :10], 1, 0), (image[:9, :10], 0, 0), (image[:10, :10], 60, 0),
                                 (image[:10, :10], -2, 0)]:
            with pytest.raises(ValueError, match="even size and offsets"):
                writer.write_over(base, patch, top, left)
        with pytest.raises(ValueError, match="base frame is 48x32"):
            writer.write_over(type(base)(base.u, base.u, base.v), image[:2, :2], 0, 0)  # a smaller frame
        writer.write_over(base, image[10:20, 20:40], 10, 20)
        assert writer.frames_written == 1
    with av.open(str(out)) as c:
        assert c.streams.video[0].frames == 1
