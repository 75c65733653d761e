"""Media safety through the HTTP API: an input object that is a playlist, a concat list or text
is refused with 422 ``unsupported_media`` whatever its name, and never renders the server file it
names; nothing is written at the output URI and no temp file is left behind."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app

from .gcs_emulator import EmulatorBucket, GCSEmulator
from .test_api import _body, _error, _no_temp_files, _settings, _wait_ready
from .test_media import gradient_frames, make_video, tone


@pytest.fixture(scope="module")
def app(weights_dir: Path, gcs_emulator: GCSEmulator, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[tuple[TestClient, Path]]:
    tmp = tmp_path_factory.mktemp("api-safety")
    with TestClient(create_app(_settings(weights_dir, gcs_emulator, tmp))) as client:
        _wait_ready(client)
        yield client, tmp


@pytest.fixture(scope="module")
def server_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real video on the server's disk: what a hostile input points FFmpeg at."""
    folder = tmp_path_factory.mktemp("server-files")
    make_video(folder / "private.mp4", gradient_frames(25), audio=tone(1.0, 44100))
    return make_video(folder / "private.ts", gradient_frames(25), audio=tone(1.0, 44100))


def _objects(target: Path) -> dict[str, str]:
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{target}\n#EXT-X-ENDLIST\n"
    return {
        "in.m3u8": playlist,
        "in.ffconcat": f"ffconcat version 1.0\nfile '{target.with_suffix('.mp4')}'\n",
        "in.txt": f"hello\n{target}\n" * 10,
        "playlist.mp4": playlist,
    }


@pytest.mark.parametrize("name", ["in.m3u8", "in.ffconcat", "in.txt", "playlist.mp4"])
def test_hostile_input_object_is_422_unsupported_media(app: tuple[TestClient, Path], gcs_bucket: EmulatorBucket,
                                                        server_video: Path, name: str) -> None:
    client, tmp = app
    gcs_bucket.put(name, _objects(server_video)[name].encode(), "application/octet-stream")
    err = _error(client.post("/api/v1/lip-video-optimized", json=_body(gcs_bucket, src=name)), 422,
                 "unsupported_media")
    assert "not a video or image in a supported format" in err["message"]
    assert gcs_bucket.uri(name) in err["message"] and str(tmp) not in err["message"]
    assert not gcs_bucket.exists("out.mp4")
    assert _no_temp_files(tmp / "work")
    # the refused download is not kept in the input cache either
    assert [p for p in (tmp / "work" / "inputs").rglob("*") if p.is_file()] == []
