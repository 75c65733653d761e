"""The TTS audio cache: keys, hit/miss/stats, TTL, LRU, clear/cleanup, persistence, corruption,
and concurrency across threads and (spawned) processes."""
from __future__ import annotations

import json
import multiprocessing as mp
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.tts import TTSCache, cache_key
from service.types import Audio

SR = 16000
STATS_KEYS = {"cache_size", "max_cache_size", "hits", "misses", "hit_rate", "total_requests"}


def audio_for(seed: int, seconds: float = 0.2) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio(rng.uniform(-0.5, 0.5, round(seconds * SR)).astype(np.float32), SR)


def fields(text: str, **extra: Any) -> dict[str, Any]:
    return {"engine": "espeak-ng", "voice": "ko", "rate_wpm": 175, "text": text, **extra}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def creator(seed: int, calls: list[int] | None = None) -> Callable[[], Audio]:
    def create() -> Audio:
        if calls is not None:
            calls.append(seed)
        return audio_for(seed)
    return create


def test_key_is_canonical_and_covers_every_field() -> None:
    a = cache_key({"text": "hi", "lang": "en", "engine": "gtts"})
    assert a == cache_key({"engine": "gtts", "lang": "en", "text": "hi"})
    assert len(a) == 64 and int(a, 16) >= 0
    assert a != cache_key({"text": "hi", "lang": "en", "engine": "espeak-ng"})
    assert a != cache_key({"text": "hi", "lang": "ko", "engine": "gtts"})
    assert a != cache_key({"text": "hi", "lang": "en", "engine": "gtts", "pitch": 40})


def test_hit_miss_and_stats(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path, max_entries=10)
    assert cache.stats() == {"cache_size": 0, "max_cache_size": 10, "hits": 0, "misses": 0,
                             "hit_rate": 0.0, "total_requests": 0}
    calls: list[int] = []
    first, hit1 = cache.get_or_create(fields("안녕"), creator(1, calls))
    second, hit2 = cache.get_or_create(fields("안녕"), creator(2, calls))
    third, hit3 = cache.get_or_create(fields("안녕", rate_wpm=200), creator(3, calls))
    cache.get_or_create(fields("안녕"), creator(4, calls))
    assert (hit1, hit2, hit3) == (False, True, False) and calls == [1, 3]
    np.testing.assert_array_equal(first.samples, audio_for(1).samples)
    np.testing.assert_array_equal(second.samples, first.samples)
    assert second.sample_rate == SR and second.samples.dtype == np.float32
    stats = cache.stats()
    assert set(stats) == STATS_KEYS
    assert stats == {"cache_size": 2, "max_cache_size": 10, "hits": 2, "misses": 2, "hit_rate": 0.5,
                     "total_requests": 4}


def test_on_disk_layout(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path)
    cache.get_or_create(fields("hello"), creator(1))
    meta = json.loads((tmp_path / "metadata.json").read_text())
    [(key, entry)] = meta["entries"].items()
    assert key == cache_key(fields("hello"))
    assert {"created", "last_access", "size_bytes", "params"} <= set(entry)
    assert entry["params"]["text"] == "hello" and (meta["hits"], meta["misses"]) == (0, 1)
    stored = np.load(tmp_path / "audio" / f"{key}.npy")
    np.testing.assert_array_equal(stored, audio_for(1).samples)  # lossless
    assert entry["size_bytes"] == (tmp_path / "audio" / f"{key}.npy").stat().st_size


def test_ttl_expiry_and_cleanup(tmp_path: Path) -> None:
    clock = Clock()
    cache = TTSCache(tmp_path, ttl_s=100, clock=clock)
    assert TTSCache(tmp_path / "x").ttl_s == 7 * 24 * 3600  # default: a week
    cache.get_or_create(fields("old"), creator(1))
    clock.now += 60
    cache.get_or_create(fields("new"), creator(2))
    clock.now += 50  # "old" is 110 s old, "new" 50 s
    assert cache.get(cache_key(fields("new"))) is not None
    assert cache.cleanup() == 1
    assert cache.stats()["cache_size"] == 1
    assert not (tmp_path / "audio" / f"{cache_key(fields('old'))}.npy").exists()
    clock.now += 60  # now "new" has expired too: a lookup is a miss and re-creates it
    audio, hit = cache.get_or_create(fields("new"), creator(3))
    assert not hit
    np.testing.assert_array_equal(audio.samples, audio_for(3).samples)
    assert cache.cleanup() == 0


def test_lru_eviction_order(tmp_path: Path) -> None:
    clock = Clock()
    cache = TTSCache(tmp_path, max_entries=3, clock=clock)
    for i, text in enumerate("abc"):
        clock.now += 1
        cache.get_or_create(fields(text), creator(i))
    clock.now += 1
    assert cache.get(cache_key(fields("a"))) is not None  # a is now the most recent
    clock.now += 1
    cache.get_or_create(fields("d"), creator(9))  # evicts b, the least recently used
    present = {t for t in "abcd" if (tmp_path / "audio" / f"{cache_key(fields(t))}.npy").exists()}
    assert present == {"a", "c", "d"} and len(cache) == 3
    clock.now += 1
    cache.get_or_create(fields("e"), creator(10))  # then c
    assert cache.get(cache_key(fields("c"))) is None and cache.get(cache_key(fields("a"))) is not None


def test_clear(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path)
    for text in "xyz":
        cache.get_or_create(fields(text), creator(1))
    cache.clear()
    assert cache.stats() == {"cache_size": 0, "max_cache_size": 1000, "hits": 0, "misses": 0,
                             "hit_rate": 0.0, "total_requests": 0}
    assert list((tmp_path / "audio").iterdir()) == []


def test_survives_a_restart(tmp_path: Path) -> None:
    TTSCache(tmp_path).get_or_create(fields("persist"), creator(5))
    again = TTSCache(tmp_path)
    audio, hit = again.get_or_create(fields("persist"), creator(6))
    assert hit
    np.testing.assert_array_equal(audio.samples, audio_for(5).samples)
    assert again.stats()["total_requests"] == 2  # counters persist too


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "bitflip"])
def test_corrupt_entry_is_dropped_and_resynthesized(tmp_path: Path, damage: str) -> None:
    cache = TTSCache(tmp_path)
    cache.get_or_create(fields("fragile"), creator(1))
    path = tmp_path / "audio" / f"{cache_key(fields('fragile'))}.npy"
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a numpy file")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "missing":
        path.unlink()
    else:
        path.write_bytes(data[:-8] + bytes(8))  # same size, different samples: only the CRC sees it
    audio, hit = cache.get_or_create(fields("fragile"), creator(2))
    assert not hit
    np.testing.assert_array_equal(audio.samples, audio_for(2).samples)
    np.testing.assert_array_equal(np.load(path), audio_for(2).samples)
    assert cache.get_or_create(fields("fragile"), creator(3))[1]


def test_corrupt_metadata_starts_empty(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path)
    cache.get_or_create(fields("a"), creator(1))
    (tmp_path / "metadata.json").write_text('{"version": 1, "entries": {')
    audio, hit = TTSCache(tmp_path).get_or_create(fields("a"), creator(2))
    assert not hit and json.loads((tmp_path / "metadata.json").read_text())["entries"]
    np.testing.assert_array_equal(audio.samples, audio_for(2).samples)


def test_failed_synthesis_caches_nothing(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path)

    def broken() -> Audio:
        raise RuntimeError("engine crashed")

    with pytest.raises(RuntimeError, match="engine crashed"):
        cache.get_or_create(fields("boom"), broken)
    assert cache.stats()["cache_size"] == 0 and list((tmp_path / "audio").iterdir()) == []
    assert not cache.get_or_create(fields("boom"), creator(1))[1]


def test_threads_ask_for_one_key_and_synthesize_once(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path)
    calls: list[int] = []
    barrier = threading.Barrier(8)
    results: list[tuple[Audio, bool]] = []

    def worker() -> None:
        barrier.wait()
        results.append(cache.get_or_create(fields("same"), creator(7, calls)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [7] and sorted(hit for _, hit in results) == [False] + [True] * 7
    for audio, _ in results:
        np.testing.assert_array_equal(audio.samples, audio_for(7).samples)


def test_threads_hammering_the_cache(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path, max_entries=5)
    other = TTSCache(tmp_path, max_entries=5)  # a second instance on the same folder
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                k = (n * 7 + i) % 9
                audio, _ = (cache if i % 2 else other).get_or_create(fields(f"t{k}"), creator(k))
                np.testing.assert_array_equal(audio.samples, audio_for(k).samples)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = cache.stats()
    assert stats["total_requests"] == 8 * 40 and stats["cache_size"] == 5
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert {f"{k}.npy" for k in meta["entries"]} == {p.name for p in (tmp_path / "audio").iterdir()}


def _process_worker(folder: str, seed: int, barrier: Any, queue: Any) -> None:
    """One spawned process: miss, wait until the other has missed too, then store its own audio."""
    cache = TTSCache(folder)

    def create() -> Audio:
        barrier.wait(timeout=30)
        return audio_for(seed, seconds=1.0)

    audio, hit = cache.get_or_create(fields("race"), create)
    queue.put((seed, audio.samples, hit))


def test_two_processes_write_the_same_key(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(str(tmp_path), seed, barrier, queue)) for seed in (1, 2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    (_, a, hit_a), (_, b, hit_b) = results
    assert not hit_a and not hit_b  # both missed and synthesized different audio...
    np.testing.assert_array_equal(a, b)  # ...yet both got the one stored entry back
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert list(meta["entries"]) == [cache_key(fields("race"))] and meta["misses"] == 2
    assert [p.name for p in (tmp_path / "audio").iterdir()] == [f"{cache_key(fields('race'))}.npy"]
    stored = np.load(tmp_path / "audio" / f"{cache_key(fields('race'))}.npy")
    np.testing.assert_array_equal(stored, a)
    assert any(np.array_equal(a, audio_for(s, seconds=1.0).samples) for s in (1, 2))


def test_an_unwritable_cache_only_costs_the_caching(tmp_path: Path) -> None:
    cache = TTSCache(tmp_path)
    (tmp_path / "audio").rmdir()
    (tmp_path / "audio").write_text("a file where the folder should be")  # every .npy write fails
    audio, hit = cache.get_or_create(fields("still spoken"), creator(4))
    assert not hit
    np.testing.assert_array_equal(audio.samples, audio_for(4).samples)
    assert cache.stats()["cache_size"] == 0
