"""CACHE_STORE: what one process learnt about an input (speaker embedding, face boxes) and TTS
audio, reused by another that never saw it; in a folder and on the GCS emulator."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from service.face import FaceDetection
from service.lipsync.engine import BoxPlan
from service.pipelines import LipVideoJob
from service.pipelines.artefacts import ArtefactStore
from service.runtime import ServiceRuntime
from service.storage import Storage
from service.types import Audio, FaceBox

from .gcs_emulator import EmulatorBucket, GCSEmulator
from .test_api import _settings, media  # noqa: F401 - fixture


@pytest.fixture(params=["folder", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtefactStore:
    emulator: GCSEmulator = request.getfixturevalue("gcs_emulator")
    storage = Storage(emulator_host=emulator.host)
    request.addfinalizer(storage.close)
    if request.param == "folder":
        return ArtefactStore(None, tmp_path, storage.gcs, namespace="models-1")
    bucket: EmulatorBucket = request.getfixturevalue("gcs_bucket")
    return ArtefactStore(f"gs://{bucket.name}/cache", tmp_path, storage.gcs, namespace="models-1")


def test_round_trips_and_misses(store: ArtefactStore) -> None:
    assert store.embedding("gs://b/in.mp4#1") is None and store.speech("espeak-ng|en|hi") is None
    emb = np.random.default_rng(0).standard_normal(256).astype(np.float32)
    store.put_embedding("gs://b/in.mp4#1", emb)
    np.testing.assert_array_equal(store.embedding("gs://b/in.mp4#1"), emb)
    assert store.embedding("gs://b/in.mp4#2") is None  # another generation is another input
    plan = BoxPlan([FaceBox(1, 50, 2, 60)], FaceDetection("opencv", 5, 4, FaceBox(1, 50, 2, 60)))
    options = (3, "static", "auto", (0, 10, 0, 0), True, 10)
    store.put_boxes("gs://b/in.mp4#1", options, plan)
    assert store.boxes("gs://b/in.mp4#1", options) == plan
    assert store.boxes("gs://b/in.mp4#1", (1, *options[1:])) is None
    speech = Audio(np.linspace(-1, 1, 1600, dtype=np.float32), 16000)
    store.put_speech("espeak-ng|en|hi", speech)
    again = store.speech("espeak-ng|en|hi")
    assert again is not None and again.sample_rate == 16000
    np.testing.assert_array_equal(again.samples, speech.samples)


def test_other_models_never_read_the_entries(store: ArtefactStore) -> None:
    store.put_embedding("k", np.ones(256, np.float32))
    other = copy.copy(store)
    other.namespace = "models-2"  # another speaker encoder or detector file
    assert other.embedding("k") is None and store.embedding("k") is not None


def test_a_process_that_never_saw_the_input_skips_embedding_and_detection(
        weights_dir: Path, gcs_emulator: GCSEmulator, gcs_bucket: EmulatorBucket, media: dict[str, bytes],  # noqa: F811
        tmp_path: Path) -> None:
    gcs_bucket.put("in.mp4", media["face"], "video/mp4")
    rt = ServiceRuntime(_settings(weights_dir, gcs_emulator, tmp_path, cache_store=str(tmp_path / "shared")))
    rt.preload()
    job = LipVideoJob("Hello there.", "en", gcs_bucket.uri("in.mp4"), gcs_bucket.uri("out.mp4"))
    first = rt.run(job, optimized=True)
    assert not first.cache_hits["speaker_embedding"] and not first.cache_hits["face_boxes"]
    rt._optimized = rt._make_optimized(rt.bundle)  # noqa: SLF001 - a fresh process: empty per-input caches
    second = rt.run(job, optimized=True)
    assert second.cache_hits["speaker_embedding"] and second.cache_hits["face_boxes"] and second.cache_hits["tts"]
    assert not second.cache_hits["frames"]  # decoded frames stay with the process that decoded them
    assert second.face_detection == first.face_detection
    rt.close()
