"""Media in and out for people without a bucket: ``POST /api/v1/uploads`` stores a user video
where jobs can read it, ``GET /api/v1/jobs/{job_id}/video`` streams a finished job's output.

Uploads are parsed as they arrive (never held whole in memory): a body over
``MAX_DOWNLOAD_BYTES`` is refused with 413 as soon as it passes the limit. The content is
checked like a job's input (recognised by its bytes, a video stream and an audio track), then
stored under ``UPLOAD_STORE`` with a random name: a folder (served to jobs as ``file://``, so
it must lie under ``LOCAL_STORAGE_ROOT``) or ``gs://bucket/prefix``.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.background import BackgroundTask

from service.errors import (
    BadInputError,
    ConflictError,
    InputTooLargeError,
    MediaError,
    NoAudioError,
    NotFoundError,
    ServiceError,
)
from service.media.probe import probe
from service.media.sniff import sniff_format
from service.runtime import ServiceRuntime
from service.settings import Settings
from service.storage.errors import BadURIError
from service.storage.uris import GcsUri

from .schemas import error_responses

log = logging.getLogger(__name__)

router = APIRouter(tags=["uploads"])

FIELD = "file"
# multipart boundaries and part headers around the file: a body this much over the limit may
# still hold a file under it
ENVELOPE_BYTES = 64 * 1024
CONTENT_TYPES = {"mp4/mov": "video/mp4", "webm/mkv": "video/webm", "avi": "video/x-msvideo"}


class UploadCreated(BaseModel):
    uri: str = Field(description="where jobs read it: file:///... under UPLOAD_STORE, or gs://bucket/prefix/...")
    size: int = Field(description="bytes")
    content_type: str = Field(description="recognised from the content, not the client's claim")


def store_uri(settings: Settings) -> str:
    """The store as a URI prefix jobs can name (``file:///...`` or ``gs://...``)."""
    store = settings.upload_location()
    return store if store.startswith("gs://") else "file://" + str(Path(store).expanduser().resolve())


def _rt(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _check_store(rt: ServiceRuntime, uri: str) -> None:
    """A store jobs cannot read is the operator's mistake: say which setting to fix."""
    try:
        rt.storage.parse(uri)
    except BadURIError as e:
        raise ServiceError("uploads are not usable with this configuration: UPLOAD_STORE must be a folder "
                           "under LOCAL_STORAGE_ROOT or gs://bucket/prefix") from e


class _FilePart:
    """python-multipart callbacks writing the ``file`` field to ``dest``, counting bytes."""

    def __init__(self, dest: Path, limit: int) -> None:
        self.dest, self.limit = dest, limit
        self.size = 0
        self.found = False
        self._out: Any = None
        self._header_field = b""
        self._header_value = b""
        self._disposition = b""

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self._begin, "on_header_field": self._field, "on_header_value": self._value,
                "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
                "on_part_data": self._data, "on_part_end": self._end}

    def _begin(self) -> None:
        self._disposition, self._header_field, self._header_value = b"", b"", b""

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._disposition)
        if params.get(b"name") == FIELD.encode() and not self.found:
            self.found = True
            self._out = open(self.dest, "wb")  # noqa: SIM115 - closed in _end / close

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._out is None:
            return
        self.size += end - start
        if self.size > self.limit:
            raise InputTooLargeError(f"the uploaded file is over the {self.limit} byte limit "
                                     "(MAX_DOWNLOAD_BYTES); upload a shorter or smaller video")
        self._out.write(data[start:end])

    def _end(self) -> None:
        self.close()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


async def _receive(request: Request, dest: Path, limit: int) -> int:
    """Stream the request's ``file`` field into ``dest``; its size in bytes."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise BadInputError("send the video as multipart/form-data with a 'file' field")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + ENVELOPE_BYTES:
        raise InputTooLargeError(f"the upload is {int(length)} bytes, over the {limit} byte limit "
                                 "(MAX_DOWNLOAD_BYTES); upload a shorter or smaller video")
    part = _FilePart(dest, limit)
    parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ServiceError:
        raise
    except Exception as e:  # noqa: BLE001 - python-multipart's parse errors: the body is malformed
        raise BadInputError(f"the multipart body cannot be parsed ({e}); send a 'file' field") from e
    finally:
        part.close()
    if not part.found:
        raise BadInputError("the multipart body has no 'file' field; send the video in a field named 'file'")
    return part.size


def _check_video(path: Path) -> str:
    """The content type of a user video fit for a job, or the job's own media errors
    (messages name the upload, never the server's path)."""
    try:
        fmt = sniff_format(path)
    except OSError as e:
        raise MediaError("the uploaded file cannot be read") from e
    if fmt.kind != "video":
        raise MediaError(f"the uploaded file is not a video in a supported format (it is {fmt.name}); "
                         "upload an mp4/mov, webm/mkv or avi video")
    try:
        info = probe(path)
    except MediaError as e:
        raise MediaError(f"the uploaded {fmt.name} file has no usable video stream; upload a video of "
                         "the user speaking") from e
    if not info.has_audio:
        raise NoAudioError("the uploaded video has no audio track; the voice is cloned from it, "
                           "so upload a video of the user speaking")
    return CONTENT_TYPES[fmt.name]


@router.post("/api/v1/uploads", status_code=201, response_model=UploadCreated,
             responses=error_responses(401, 403, 413, 422, 500, 502, 503),
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": [FIELD],
                 "properties": {FIELD: {"type": "string", "format": "binary",
                                        "description": "the user's video (mp4/mov, webm/mkv or avi) with "
                                                       "speech; at most MAX_DOWNLOAD_BYTES"}}}}}}},
             summary="Upload a user video; the answer's uri is a job's user_video_gs")
async def create_upload(request: Request) -> UploadCreated:
    rt = _rt(request)
    settings = rt.settings
    store = store_uri(settings)
    name = f"{uuid.uuid4().hex}"
    await asyncio.to_thread(_check_store, rt, f"{store}/{name}.mp4")
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="req-upload-", dir=settings.work_dir))
    try:
        received = tmp / "video"
        size = await _receive(request, received, settings.max_download_bytes)
        content_type = await asyncio.to_thread(_check_video, received)
        ext = {"video/mp4": "mp4", "video/webm": "webm", "video/x-msvideo": "avi"}[content_type]
        uri = f"{store}/{name}.{ext}"
        await asyncio.to_thread(_store, rt, received, uri, content_type)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("upload stored: %s (%d bytes, %s)", uri, size, content_type)
    return UploadCreated(uri=uri, size=size, content_type=content_type)


def _store(rt: ServiceRuntime, path: Path, uri: str, content_type: str) -> None:
    loc = rt.storage.parse(uri)
    if isinstance(loc, GcsUri):
        rt.storage.upload(path, uri, content_type)
        return
    loc.path.parent.mkdir(parents=True, exist_ok=True)
    rt.storage.upload(path, uri)


VIDEO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The output video (Range requests answer 206)",
          "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}},
    206: {"description": "Part of the output video (a Range request)",
          "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}},
    **error_responses(401, 404, 409, 500, 502, 503),
}


@router.get("/api/v1/jobs/{job_id}/video", tags=["jobs"], response_class=FileResponse, responses=VIDEO_RESPONSES,
            summary="A succeeded job's output video, with HTTP Range support (for <video>)")
async def job_video(job_id: Annotated[str, PathParam(max_length=64)], request: Request) -> FileResponse:
    rt = _rt(request)
    record = rt.jobs.get(job_id, request.state.key_name)
    if record.status != "succeeded" or record.result is None:
        raise ConflictError(f"job {job_id!r} is {record.status}: its video exists once the status is succeeded")
    uri = str(record.result["output_video_gs"])
    loc = rt.storage.parse(uri)
    if not isinstance(loc, GcsUri):
        if not loc.path.is_file():
            raise NotFoundError(f"the output of job {job_id!r} ({uri}) is no longer there")
        return FileResponse(loc.path, media_type="video/mp4")
    rt.settings.work_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="req-video-", dir=rt.settings.work_dir))
    try:
        path = await asyncio.to_thread(rt.storage.download, uri, tmp, filename="video.mp4")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(path, media_type="video/mp4",
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
