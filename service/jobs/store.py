"""Where job records live (``JOB_STORE``): a folder, or ``gs://bucket/prefix``.

Each record is one JSON object named after its job id, replaced whole on every change:
a temp file renamed over the old one (a folder), or one single-request upload (Cloud
Storage makes an object visible only complete). A reader sees the old record or the new
one, never half of either.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ..storage.gcs import GcsBackend
from ..storage.uris import GS_SCHEME, GcsUri, parse_uri
from .records import JobRecord

log = logging.getLogger(__name__)

_JOB_FILE = re.compile(r"job_[0-9a-f]{32}\.json")


class JobStore(Protocol):
    where: str

    def put(self, record: JobRecord) -> None: ...

    def delete(self, job_id: str) -> None: ...

    def load_all(self) -> Iterator[JobRecord]: ...


class FolderJobStore:
    """Records as ``<folder>/<job_id>.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.where = str(folder)
        folder.mkdir(parents=True, exist_ok=True)

    def put(self, record: JobRecord) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{record.job_id}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(record.to_json())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.folder / f"{record.job_id}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, job_id: str) -> None:
        (self.folder / f"{job_id}.json").unlink(missing_ok=True)

    def load_all(self) -> Iterator[JobRecord]:
        for stale in self.folder.glob(".job_*.part"):  # a write a killed process never finished
            stale.unlink(missing_ok=True)
        for path in sorted(self.folder.iterdir()):
            if _JOB_FILE.fullmatch(path.name):
                record = _parse(path.read_bytes(), str(path))
                if record is not None:
                    yield record


class GcsJobStore:
    """Records as objects ``gs://bucket/prefix/<job_id>.json`` (operator configuration: not
    subject to ``ALLOWED_BUCKETS``, which limits what requests name)."""

    def __init__(self, backend: GcsBackend, bucket: str, prefix: str) -> None:
        self._gcs = backend
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.where = f"{GS_SCHEME}{bucket}/{self.prefix}"

    def _loc(self, job_id: str) -> GcsUri:
        return GcsUri(self.bucket, f"{self.prefix}/{job_id}.json" if self.prefix else f"{job_id}.json")

    def put(self, record: JobRecord) -> None:
        self._gcs.put_bytes(self._loc(record.job_id), record.to_json(), "application/json")

    def delete(self, job_id: str) -> None:
        self._gcs.delete(self._loc(job_id))

    def load_all(self) -> Iterator[JobRecord]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        for name in self._gcs.list_names(self.bucket, prefix):
            if _JOB_FILE.fullmatch(name[len(prefix):]):
                record = _parse(self._gcs.get_bytes(GcsUri(self.bucket, name)), f"{GS_SCHEME}{self.bucket}/{name}")
                if record is not None:
                    yield record


class _NoStore:
    """For a process that renders but keeps no jobs (a Ray Serve renderer replica)."""

    where = "(none)"

    def put(self, record: JobRecord) -> None:
        pass

    def delete(self, job_id: str) -> None:
        pass

    def load_all(self) -> Iterator[JobRecord]:
        return iter(())


NO_STORE: JobStore = _NoStore()


def _parse(raw: bytes, where: str) -> JobRecord | None:
    try:
        return JobRecord.from_json(raw)
    except (ValueError, TypeError, KeyError) as e:
        log.error("unreadable job record %s (%s): skipped", where, e)
        return None


def make_job_store(spec: str | None, work_dir: Path, gcs: GcsBackend) -> JobStore:
    """``JOB_STORE``: unset = ``$WORK_DIR/jobs``; a folder path; or ``gs://bucket/prefix``."""
    if spec and spec.startswith(GS_SCHEME):
        bucket, _, prefix = spec[len(GS_SCHEME):].partition("/")
        parse_uri(f"{GS_SCHEME}{bucket}/{prefix or 'jobs'}/x.json", local_root=None)  # names valid
        return GcsJobStore(gcs, bucket, prefix)
    folder = Path(spec).expanduser().resolve() if spec else work_dir / "jobs"
    return FolderJobStore(folder)
