"""`lipsync bench` hands every option to bench/e2e.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from service.commands.cli import main


@pytest.mark.parametrize("argv", [["bench", "--help"], ["bench", "--", "--help"]])
def test_bench_passes_options_to_the_script(argv: list[str], capfd: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capfd.readouterr().out
    assert "End-to-end benchmark" in out and "--workload" in out and "--bf16" in out


def test_bench_reports_the_scripts_own_errors(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--workload", "nonsense"]) == 2
    assert "invalid choice: 'nonsense'" in capfd.readouterr().err


def test_bench_is_listed_in_the_commands(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bench" in capfd.readouterr().out


def test_bench_box_needs_the_resize_it_was_measured_at(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--box", "--resize-factor", "2"]) == 2
    assert "--box is the face box of the standard input at --resize-factor 3" in capfd.readouterr().err


def test_file_store_gives_uris_the_service_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --storage file: inputs copied under LOCAL_STORAGE_ROOT, URIs that the service's own parser takes
    import bench.e2e as e2e
    from service.storage import parse_uri

    monkeypatch.setattr(e2e, "WORK", tmp_path)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0\0\0\x18ftypmp42")
    with e2e._store("file") as store:
        root = Path(store.env["LOCAL_STORAGE_ROOT"])
        src = store.put("input.mp4", video)
        assert (root / e2e.BUCKET / "input.mp4").read_bytes() == video.read_bytes()
        for uri in (src, store.uri("out.mp4")):
            assert parse_uri(uri, local_root=root).path.parent == root / e2e.BUCKET  # type: ignore[union-attr]
