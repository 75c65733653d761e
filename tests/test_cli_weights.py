"""`lipsync weights make-test` / `check` / `fetch` as a user runs them."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from service.commands.cli import main
from service.weights import catalog
from service.weights.formula import DEFAULT_TAG, fingerprint, generate_state_dict, read_spec

from .conftest import load_case

OFFICIAL = ["wav2lip_gan.pth", "freevc.pth", "freevc-s.pth", "freevc-24.pth", "WavLM-Large.pt"]


def test_make_test_writes_official_names_and_says_not_trained(weights_dir: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for name in OFFICIAL:
        assert (weights_dir / name).is_file()
    assert "NOT TRAINED" in (weights_dir / "GENERATED_WEIGHTS_NOT_TRAINED.txt").read_text()
    # official layouts
    w2l = torch.load(weights_dir / "wav2lip_gan.pth", map_location="cpu")
    assert set(w2l) == {"state_dict", "optimizer", "global_step", "global_epoch"}
    assert all(k.startswith("module.") for k in w2l["state_dict"])
    fvc = torch.load(weights_dir / "freevc.pth", map_location="cpu")
    assert set(fvc) == {"model", "iteration", "optimizer", "learning_rate"}
    assert any(k.endswith("weight_g") for k in fvc["model"])
    wlm = torch.load(weights_dir / "WavLM-Large.pt", map_location="cpu")
    assert set(wlm) == {"cfg", "model"} and wlm["cfg"]["encoder_layers"] == 2
    assert not any(k.startswith("encoder.layers.2.") for k in wlm["model"])


def test_make_test_banner_on_stderr(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "service.commands.cli", "weights", "make-test", "--out",
                        str(tmp_path), "--wavlm-layers", "1"], capture_output=True, text=True, check=True)
    assert "NOT TRAINED" in r.stderr
    assert r.stdout.count("NOT trained") == 5


def test_generated_weights_match_the_reference_fingerprints() -> None:
    """The reference vectors were made from these exact weights."""
    assert fingerprint(generate_state_dict(read_spec("wav2lip.tsv"), DEFAULT_TAG)) == pytest.approx(
        float(load_case("wav2lip_case.npz")["fingerprint"]), rel=1e-12)


def test_check_reports_each_file(weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "w"
    shutil.copytree(weights_dir, d)
    (d / "freevc-24.pth").unlink()
    # a FreeVC file under the Wav2Lip name: present but the wrong layout
    shutil.copy(d / "freevc.pth", d / "wav2lip_gan.pth")
    code = main(["weights", "check", str(d)])
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert code == 1
    assert "wrong layout" in lines["wav2lip_gan.pth"] and "MB" in lines["wav2lip_gan.pth"]
    assert "missing" in lines["freevc-24.pth"]
    for name in ("freevc.pth", "freevc-s.pth", "WavLM-Large.pt"):
        assert " ok " in lines[name], lines[name]
    assert "FreeVC checkpoint" in out


def test_check_all_required_present_is_success(weights_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "check", str(weights_dir)]) == 0


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_fetch_command_against_local_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    served = tmp_path / "mirror"
    served.mkdir()
    payload = b"generated checkpoint bytes" * 1000
    (served / "wav2lip_gan.pth").write_bytes(payload)
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(served)))  # type: ignore[misc]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/wav2lip_gan.pth"
        good = catalog.WeightFile("wav2lip_gan.pth", "wav2lip", "t", (url,),
                                  sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
        monkeypatch.setattr(catalog, "CATALOG", (good,))
        out = tmp_path / "weights"
        assert main(["weights", "fetch", "--out", str(out)]) == 0
        assert (out / "wav2lip_gan.pth").read_bytes() == payload
        bad = catalog.WeightFile("wav2lip_gan.pth", "wav2lip", "t", (url,), sha256="f" * 64)
        monkeypatch.setattr(catalog, "CATALOG", (bad,))
        assert main(["weights", "fetch", "--out", str(tmp_path / "w2")]) == 1
        assert "SHA-256 mismatch" in capsys.readouterr().err
        assert not (tmp_path / "w2" / "wav2lip_gan.pth").exists()
        assert main(["weights", "fetch", "--out", str(out), "--only", "nope.pth"]) == 2
    finally:
        srv.shutdown()
        srv.server_close()


def test_fetch_gets_every_file_s3fd_included_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The real catalog, each file served by a local mirror: no --only fetches them all, the S3FD
    detector (optional for `weights check`) too."""
    from service.face import S3FD_FILE

    served = tmp_path / "mirror"
    served.mkdir()
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(served)))  # type: ignore[misc]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        local = []
        for w in catalog.CATALOG:
            payload = f"generated bytes of {w.name}".encode() * 100
            (served / w.name).write_bytes(payload)
            local.append(dataclasses.replace(w, urls=(f"http://127.0.0.1:{srv.server_address[1]}/{w.name}",),
                                             sha256=hashlib.sha256(payload).hexdigest(), size=len(payload)))
        monkeypatch.setattr(catalog, "CATALOG", tuple(local))
        out = tmp_path / "weights"
        assert main(["weights", "fetch", "--out", str(out)]) == 0
    finally:
        srv.shutdown()
        srv.server_close()
    assert sorted(p.name for p in out.iterdir()) == sorted(w.name for w in local)
    assert f"{S3FD_FILE}: ok" in capsys.readouterr().out
    assert not catalog.BY_NAME[S3FD_FILE].required  # a missing detector file does not fail `weights check`
