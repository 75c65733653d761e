"""``lipsync weights check``: which expected files are present, and do they load."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models import ModelLoadError

from .catalog import CATALOG, WeightFile


@dataclass(frozen=True)
class FileStatus:
    file: WeightFile
    path: Path
    status: str
    """``ok``, ``missing``, ``wrong layout`` or ``hash mismatch``."""
    size: int | None = None
    detail: str = ""


def _loader(kind: str) -> Callable[[Path], Any]:
    # imported lazily: checking one file must not import every model
    if kind == "wav2lip":
        from models.wav2lip import load_wav2lip
        return load_wav2lip
    if kind.startswith("freevc"):
        from models.freevc import load_freevc
        return lambda p: load_freevc(p, config=kind)
    if kind == "wavlm":
        from models.wavlm import load_wavlm
        return load_wavlm
    if kind == "speaker":
        from models.speaker_encoder import load_speaker_encoder
        return load_speaker_encoder
    if kind == "s3fd":
        return _read_s3fd
    raise ValueError(f"no loader for {kind!r}")


def _read_s3fd(path: Path) -> Any:
    from models._checkpoint import read_checkpoint

    sd = read_checkpoint(path, "S3FD")
    if not isinstance(sd, dict) or "conv1_1.weight" not in sd:
        raise ModelLoadError(f"{path} is not an S3FD state_dict (no 'conv1_1.weight')")
    return sd


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_file(w: WeightFile, weights_dir: Path, verify_hash: bool = False) -> FileStatus:
    path = Path(weights_dir) / w.name
    if not path.is_file():
        return FileStatus(w, path, "missing")
    size = path.stat().st_size
    if verify_hash and w.sha256 and sha256_of(path) != w.sha256:
        return FileStatus(w, path, "hash mismatch", size, f"expected sha256 {w.sha256}")
    try:
        model = _loader(w.kind)(path)
        del model
    except ModelLoadError as e:
        return FileStatus(w, path, "wrong layout", size, str(e))
    return FileStatus(w, path, "ok", size)


def check_weights(weights_dir: Path, verify_hash: bool = False) -> list[FileStatus]:
    return [check_file(w, weights_dir, verify_hash) for w in CATALOG]


def format_report(statuses: list[FileStatus]) -> str:
    lines = []
    for s in statuses:
        size = f"{s.size / 1e6:9.1f} MB" if s.size is not None else " " * 12
        need = "required" if s.file.required else "optional"
        lines.append(f"{s.file.name:<28} {s.status:<13} {size}  {need}  {s.file.description}")
        if s.detail:
            lines.append(f"    {s.detail[:400]}")
    return "\n".join(lines)
