"""Decoded frames kept between requests replay exactly what decoding gives, within a budget."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from models.wav2lip import load_wav2lip
from service.lipsync.engine import BoxPlan, SyncOptions, composite_frames
from service.lipsync.face_memo import FaceFeatureMemo
from service.lipsync.frame_memo import FrameMemo, MemoryBudget
from service.media import iter_frames, read_audio
from service.pipelines.input_cache import InputCache, InputEntry
from service.types import Audio, FaceBox

from .conftest import DATA

FACE = DATA / "face_dev.mp4"  # 75 frames, 960x540
BOX = (135, 295, 327, 477)


class CountingDecoder:
    """Decodes the real clip and remembers where each pass started."""

    def __init__(self, resize_factor: int = 2) -> None:
        self.starts: list[int] = []
        self.resize_factor = resize_factor

    def __call__(self, start: int) -> Iterator[np.ndarray]:
        self.starts.append(start)
        return iter_frames(FACE, resize_factor=self.resize_factor, start=start)


@pytest.fixture(scope="module")
def decoded() -> list[np.ndarray]:
    return list(iter_frames(FACE, resize_factor=2))


def test_second_pass_comes_from_memory(decoded: list[np.ndarray]) -> None:
    decoder = CountingDecoder()
    memo = FrameMemo(decoder, MemoryBudget(1 << 30))
    first = list(memo.open())
    assert memo.complete and len(memo) == 75
    second = list(memo.open())
    assert decoder.starts == [0]  # no second decode
    assert len(first) == len(second) == len(decoded) == 75
    assert all(np.array_equal(a, b) and np.array_equal(b, c) for a, b, c in zip(first, second, decoded, strict=True))


def test_yielded_frames_are_copies(decoded: list[np.ndarray]) -> None:
    memo = FrameMemo(CountingDecoder(), MemoryBudget(1 << 30))
    for frame in memo.open():
        frame[:] = 0  # the engine pastes faces into the frames it gets
    for frame in memo.open():
        frame[:] = 0
    assert all(np.array_equal(a, b) for a, b in zip(memo.open(), decoded, strict=True))


def test_a_longer_request_extends_a_recorded_prefix(decoded: list[np.ndarray]) -> None:
    decoder = CountingDecoder()
    memo = FrameMemo(decoder, MemoryBudget(1 << 30))
    it = memo.open()
    short = [next(it) for _ in range(20)]  # a one-word request stops early
    it.close()
    assert len(memo) == 20 and not memo.complete and memo.covers(20) and not memo.covers(21)
    full = list(memo.open())
    assert decoder.starts == [0, 20]  # the rest decoded, the prefix skipped
    assert memo.complete
    assert all(np.array_equal(a, b) for a, b in zip(short + full[20:], decoded, strict=True))
    assert len(full) == 75 and all(np.array_equal(a, b) for a, b in zip(full, decoded, strict=True))


def test_budget_caps_memory_and_release_returns_it(decoded: list[np.ndarray]) -> None:
    per_frame = decoded[0].nbytes
    budget = MemoryBudget(10 * per_frame + 1)
    memo = FrameMemo(CountingDecoder(), budget)
    assert len(list(memo.open())) == 75  # output is whole even when the memo is full
    assert len(memo) == 10 and not memo.complete and budget.used == 10 * per_frame
    again = list(memo.open())
    assert all(np.array_equal(a, b) for a, b in zip(again, decoded, strict=True)) and len(again) == 75
    memo.release()
    assert budget.used == 0 and len(memo) == 0


def test_evicted_input_gives_its_frames_back(tmp_path: Path, decoded: list[np.ndarray]) -> None:
    budget = MemoryBudget(1 << 30)
    cache = InputCache(tmp_path / "inputs", max_entries=1)
    entries = []
    for name in ("a", "b"):
        folder = cache.folder_for(name)
        entry = InputEntry(name, folder / "input.mp4", 0)
        entry.frames[2] = FrameMemo(CountingDecoder(), budget)
        list(entry.frames[2].open())
        entries.append(entry)
        cache.put(entry)
    assert len(cache) == 1
    assert budget.used == 75 * decoded[0].nbytes  # only the input still cached holds frames
    assert not entries[0].frames


@pytest.fixture(scope="module")
def model(weights_dir: Path) -> torch.nn.Module:
    return load_wav2lip(weights_dir / "wav2lip_gan.pth")


@pytest.fixture(scope="module")
def speeches() -> tuple[Audio, Audio]:
    """The dev speech (75 output frames, as many as the clip) and one 1 s longer (it loops)."""
    speech = read_audio(DATA / "speech_dev.wav", 16000)
    return speech, Audio(np.concatenate([speech.samples, speech.samples[:16000]]), 16000)


def compose(model: torch.nn.Module, audio: Audio, **memos: object) -> list[np.ndarray]:
    """The engine's composited frames for the dev clip with its fixed box."""
    def plan(*_: object) -> BoxPlan:
        return BoxPlan([FaceBox(*BOX)])

    with torch.inference_mode():
        return list(composite_frames(FACE, audio, model, SyncOptions(box=BOX, batch_size=16), plan,
                                     **memos))  # type: ignore[arg-type]


def test_engine_output_is_identical_with_memo(model: torch.nn.Module, speeches: tuple[Audio, Audio]) -> None:
    """Composited frames replayed from memory equal the ones from a fresh decode, also when
    the output loops over the input (speech longer than the video)."""
    speech, long_speech = speeches
    memo = FrameMemo(lambda start: iter_frames(FACE, start=start), MemoryBudget(1 << 30))
    for audio in (speech, long_speech, speech):
        fresh = compose(model, audio)
        replayed = compose(model, audio, open_frames=memo.open)
        assert len(fresh) == len(replayed)
        assert all(np.array_equal(a, b) for a, b in zip(fresh, replayed, strict=True))
    assert memo.complete


def test_face_feature_memo_is_all_or_nothing_and_budgeted() -> None:
    budget = MemoryBudget(1 << 30)
    memo = FaceFeatureMemo(budget)
    skips = [torch.rand(3, 16, 8, 8).contiguous(memory_format=torch.channels_last), torch.rand(3, 32, 1, 1)]
    keys = [(0, "box"), (1, "box"), (2, "box")]
    assert memo.lookup(keys) is None
    memo.store(keys, skips)
    per_frame = (16 * 8 * 8 + 32) * 4
    assert len(memo) == 3 and budget.used == 3 * per_frame
    got = memo.lookup([keys[2], keys[0]])  # any order, any batch
    assert got is not None
    assert torch.equal(got[0], skips[0][[2, 0]]) and torch.equal(got[1], skips[1][[2, 0]])
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    assert memo.lookup([keys[0], (3, "box")]) is None  # one unknown frame: recompute the batch
    assert memo.lookup([(0, "other box")]) is None     # another box is another crop
    memo.release()
    assert budget.used == 0 and len(memo) == 0
    small = FaceFeatureMemo(MemoryBudget(2 * per_frame))
    small.store(keys, skips)
    assert len(small) == 2


def test_engine_output_is_identical_with_face_memo(model: torch.nn.Module,
                                                   speeches: tuple[Audio, Audio]) -> None:
    speech, long_speech = speeches
    memo = FaceFeatureMemo(MemoryBudget(1 << 30))
    for audio in (speech, long_speech, long_speech):
        fresh = compose(model, audio)
        reused = compose(model, audio, face_memo=memo)
        assert len(fresh) == len(reused)
        worst = max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(fresh, reused, strict=True))
        assert worst <= 1  # the same math; at most a truncation boundary apart
    assert len(memo) == 75 and memo.hits > 0


def test_memory_goes_to_recent_inputs(tmp_path: Path) -> None:
    budget = MemoryBudget(100)
    cache = InputCache(tmp_path / "inputs", max_entries=8)
    entries = [InputEntry(k, cache.folder_for(k) / "input.mp4", 0) for k in "abc"]
    for entry in entries:
        entry.faces[1] = FaceFeatureMemo(budget)
        entry.faces[1].store([0], [torch.zeros(1, 10)])  # 40 bytes each
        cache.put(entry)
    assert [len(e.faces.get(1, [])) for e in entries] == [1, 1, 0]  # the budget was full for "c"
    cache.free_memory(budget, 60, keep=entries[2])
    assert not entries[0].faces and len(entries[1].faces[1]) == 1 and budget.used == 40


@pytest.mark.parametrize("box", [BOX, (136, 296, 328, 478), (401, 540, 803, 960)], ids=["odd", "even", "edge"])
def test_encoding_from_converted_frames_gives_the_same_frames(model: torch.nn.Module,
                                                              speeches: tuple[Audio, Audio], tmp_path: Path,
                                                              box: tuple[int, int, int, int],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A repeat render converts only the face box of each frame (the rest comes from the memo's
    yuv420p of the source frame): the encoder gets the same pictures, bit for bit, whatever
    the box's parity, also for a box at the frame's bottom-right corner. (Compared as what
    x264 receives: x264 itself does not always give the same bits for the same pictures — the
    first encode of a process differs from later ones.)"""
    from service.lipsync.engine import sync_lips
    from service.media.writer import VideoWriter, _plane_view

    pictures: list[list[np.ndarray]] = []
    encode = VideoWriter._encode

    def recording(self: VideoWriter, frame: object) -> None:
        pictures.append([_plane_view(p).copy() for p in frame.planes])  # type: ignore[attr-defined]
        encode(self, frame)  # type: ignore[arg-type]

    monkeypatch.setattr(VideoWriter, "_encode", recording)
    _, long_speech = speeches  # 100 output frames: the 75 source frames, then 25 again
    memo = FrameMemo(lambda start: iter_frames(FACE, start=start), MemoryBudget(1 << 30))
    conversions: list[int] = []

    class Counted:
        def converted(self, index, key, convert):  # noqa: ANN001, ANN202 - the BaseFrames protocol
            return memo.converted(index, key, lambda f: conversions.append(index) or convert(f))

    opts = SyncOptions(box=box, batch_size=16)

    def plan(*_: object) -> BoxPlan:
        return BoxPlan([FaceBox(*box)])

    with torch.inference_mode():
        sync_lips(FACE, long_speech, tmp_path / "plain.mp4", model, opts, plan)
        plain, pictures[:] = pictures[:], []
        for i in range(2):  # the first render records and converts as it goes; the second replays
            sync_lips(FACE, long_speech, tmp_path / f"over{i}.mp4", model, opts, plan, open_frames=memo.open,
                      bases=Counted())
            over, pictures[:] = pictures[:], []
            assert len(plain) == len(over) == 100
            assert all(np.array_equal(a, b) for pa, po in zip(plain, over, strict=True)
                       for a, b in zip(pa, po, strict=True))
            # each source frame converted once, in the first render
            assert conversions == list(range(75))


def test_converted_frames_are_budgeted_and_released(decoded: list[np.ndarray]) -> None:
    from service.media.writer import YuvImage

    frame_bytes = decoded[0].nbytes
    budget = MemoryBudget(3 * frame_bytes + 2 * frame_bytes // 2)
    memo = FrameMemo(CountingDecoder(), budget)
    source = memo.open()
    frames = [next(source) for _ in range(3)]
    source.close()  # type: ignore[attr-defined]
    assert len(memo) == 3 and len(frames) == 3
    calls: list[int] = []

    def half(frame: np.ndarray) -> YuvImage:
        calls.append(1)
        h, w = frame.shape[:2]
        return YuvImage(frame[:, :, 0].copy(), frame[: h // 2, : w // 2, 1].copy(), frame[: h // 2, : w // 2, 2].copy())

    assert memo.converted(5, "k", half) is None and not calls  # not recorded: nothing to convert
    first = memo.converted(0, "k", half)
    assert first is not None and memo.converted(0, "k", half) is first and len(calls) == 1
    assert memo.converted(1, "k", half) is not None
    assert memo.converted(2, "k", half) is not None  # over budget: converted, not kept
    assert memo.converted(2, "k", half) is not None and len(calls) == 4
    memo.release()
    assert budget.used == 0
