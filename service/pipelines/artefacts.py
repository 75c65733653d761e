"""Small artefacts shared by every process that renders (``CACHE_STORE``): a folder, or
``gs://bucket/prefix`` for a cluster.

What an input generation yields once and never changes: the speaker embedding of its voice
and its face boxes (with what detection found); and the TTS audio of a text. A replica that
never saw an input still skips the speaker embedding and the face detection when another one
did. Entries are written whole (temp + rename, or one upload); a missing or unreadable entry
is a miss, never an error.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..face import FaceDetection
from ..lipsync.engine import BoxPlan
from ..storage.gcs import GcsBackend
from ..storage.uris import GS_SCHEME, GcsUri
from ..types import Audio, FaceBox

log = logging.getLogger(__name__)


class ArtefactStore:
    """``namespace`` names what the artefacts were made with (weights files): entries made
    with other models are never read."""

    def __init__(self, spec: str | None, work_dir: Path, gcs: GcsBackend, namespace: str = "") -> None:
        self.namespace = namespace
        self._gcs = None
        if spec and spec.startswith(GS_SCHEME):
            self._gcs = gcs
            self.bucket, _, prefix = spec[len(GS_SCHEME):].partition("/")
            self.prefix = prefix.strip("/")
            self.where = spec
        else:
            self.folder = Path(spec).expanduser().resolve() if spec else work_dir / "cache"
            self.folder.mkdir(parents=True, exist_ok=True)
            self.where = str(self.folder)

    # ---- typed entries ----------------------------------------------------------------------

    def embedding(self, input_key: str) -> np.ndarray | None:
        raw = self._get("embedding", input_key)
        return None if raw is None else np.load(io.BytesIO(raw), allow_pickle=False)

    def put_embedding(self, input_key: str, embedding: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(embedding, dtype=np.float32), allow_pickle=False)
        self._put("embedding", input_key, buf.getvalue())

    def boxes(self, input_key: str, options: tuple[object, ...]) -> BoxPlan | None:
        raw = self._get("boxes", f"{input_key}|{options!r}")
        if raw is None:
            return None
        data = json.loads(raw)
        report = data.get("report")
        return BoxPlan([FaceBox(*b) for b in data["boxes"]],
                       FaceDetection(report["detector"], report["frames_checked"], report["frames_with_face"],
                                     FaceBox(*report["box"]) if report["box"] else None) if report else None)

    def put_boxes(self, input_key: str, options: tuple[object, ...], plan: BoxPlan) -> None:
        data: dict[str, Any] = {"boxes": [[b.top, b.bottom, b.left, b.right] for b in plan.boxes],
                                "report": plan.report.as_dict() if plan.report else None}
        self._put("boxes", f"{input_key}|{options!r}", json.dumps(data).encode())

    def speech(self, text_key: str) -> Audio | None:
        raw = self._get("tts", text_key)
        if raw is None:
            return None
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            return Audio(z["samples"], int(z["rate"]))

    def put_speech(self, text_key: str, audio: Audio) -> None:
        buf = io.BytesIO()
        np.savez(buf, samples=audio.samples.astype(np.float32), rate=np.int64(audio.sample_rate))
        self._put("tts", text_key, buf.getvalue())

    # ---- bytes ------------------------------------------------------------------------------

    def _name(self, kind: str, key: str) -> str:
        return f"{kind}/{hashlib.sha256(f'{self.namespace}|{key}'.encode()).hexdigest()[:40]}"

    def _get(self, kind: str, key: str) -> bytes | None:
        name = self._name(kind, key)
        try:
            if self._gcs is not None:
                return self._gcs.get_bytes(self._loc(name))
            return (self.folder / name).read_bytes()
        except Exception as e:  # noqa: BLE001 - a shared cache that cannot answer is a miss
            log.debug("artefact %s/%s: miss (%s)", self.where, name, type(e).__name__)
            return None

    def _put(self, kind: str, key: str, data: bytes) -> None:
        name = self._name(kind, key)
        try:
            if self._gcs is not None:
                self._gcs.put_bytes(self._loc(name), data, "application/octet-stream")
                return
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except Exception as e:  # noqa: BLE001 - the render succeeded; only sharing it failed
            log.warning("could not share artefact %s/%s: %s", self.where, name, e)

    def _loc(self, name: str) -> GcsUri:
        return GcsUri(self.bucket, f"{self.prefix}/{name}" if self.prefix else name)
