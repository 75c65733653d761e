"""Jobs over HTTP: submit, follow, cancel, list; and the synchronous routes' way of waiting.

Every render is a job. ``POST /api/v1/jobs`` answers 202 as soon as the request passed every
check; the synchronous routes submit the same way and wait for the job to finish.
"""
from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field

from service.jobs.records import JobRecord, Status, job_failure
from service.logs import request_id
from service.runtime import ServiceRuntime

from .schemas import LipVideoRequest, LipVideoResponse, error_responses

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

MAX_WAIT_S = 30
POLL_S = 0.1  # how often a waiting answer looks at its job (a dictionary read)


class JobRequest(LipVideoRequest):
    pipeline: Literal["optimized", "baseline"] = Field(default="optimized", description="which pipeline renders it")
    webhook_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://",
                                    description="POSTed the job record on a terminal status (signed, "
                                                "X-Lipsync-Signature); https, or a host in WEBHOOK_ALLOWED_HOSTS")


class JobCreated(BaseModel):
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    status_url: str


class JobProgress(BaseModel):
    step: str
    fraction: float


class JobError(BaseModel):
    code: str
    message: str


class JobWebhook(BaseModel):
    url: str
    delivered: bool
    attempts: int
    last_status: int | None


class JobView(BaseModel):
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    pipeline: Literal["optimized", "baseline"]
    request: dict[str, Any]
    progress: JobProgress
    result: LipVideoResponse | None
    error: JobError | None
    attempts: int
    served_by: str | None
    created_at: str = Field(description="RFC 3339, UTC")
    started_at: str | None
    finished_at: str | None
    webhook: JobWebhook | None


class JobList(BaseModel):
    jobs: list[JobView]


def _rt(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _view(record: JobRecord) -> JobView:
    return JobView.model_validate(record.public())


async def submit(request: Request, body: LipVideoRequest, pipeline: str, *, webhook_url: str | None = None,
                 idempotency_key: str | None = None, detached: bool = True) -> tuple[JobRecord, bool]:
    """Check and queue (off the event loop: the checks ask storage and DNS)."""
    fields = body.model_dump(include=set(LipVideoRequest.model_fields), mode="json")
    return await asyncio.to_thread(_rt(request).submit, fields, pipeline, owner=request.state.key_name,
                                   webhook_url=webhook_url, idempotency_key=idempotency_key, detached=detached,
                                   rid=request_id.get())


async def wait_until(request: Request, job_id: str, timeout_s: float | None, since: str | None = None) -> JobRecord:
    """The record once it is finished (or, with ``since``, once its status is no longer that),
    or when ``timeout_s`` passes. Polls a dictionary: no thread is held while waiting."""
    rt, owner = _rt(request), request.state.key_name
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    while True:
        record = rt.jobs.get(job_id, owner)
        if record.finished or (since is not None and record.status != since):
            return record
        if deadline is not None and loop.time() >= deadline:
            return record
        await asyncio.sleep(POLL_S)


async def render_and_wait(request: Request, body: LipVideoRequest, pipeline: str) -> LipVideoResponse:
    """The synchronous routes: a job, waited for; its error raised as the route's error."""
    record, _ = await submit(request, body, pipeline, detached=False)
    record = await wait_until(request, record.job_id, None)
    if record.status != "succeeded" or record.result is None:
        raise job_failure(record)
    return LipVideoResponse.model_validate(record.result)


@router.post("", status_code=202, response_model=JobCreated,
             responses={200: {"model": JobCreated, "description": "The job an earlier request with the same "
                              "Idempotency-Key and body created"},
                        **error_responses(401, 403, 404, 409, 413, 422, 500, 502, 503)},
             summary="Submit a lip-sync job (checked now, rendered in the background)")
async def create_job(body: JobRequest, request: Request, response: Response,
                     idempotency_key: Annotated[str | None, Header(max_length=255)] = None) -> JobCreated:
    record, created = await submit(request, body, body.pipeline, webhook_url=body.webhook_url,
                                   idempotency_key=idempotency_key)
    url = str(request.url_for("get_job", job_id=record.job_id).path)
    response.headers["Location"] = url
    if not created:
        response.status_code = 200
    return JobCreated(job_id=record.job_id, status=record.status, status_url=url)


@router.get("/{job_id}", response_model=JobView, responses=error_responses(401, 404, 500),
            summary="A job's record; ?wait_s=N holds the answer until its status changes")
async def get_job(job_id: Annotated[str, Path(max_length=64)], request: Request,
                  wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0) -> JobView:
    record = _rt(request).jobs.get(job_id, request.state.key_name)
    if wait_s and not record.finished:
        record = await wait_until(request, job_id, wait_s, since=record.status)
    return _view(record)


@router.delete("/{job_id}", response_model=JobView, responses=error_responses(401, 404, 409, 500),
               summary="Cancel a job: queued at once, running at its next step or batch")
async def cancel_job(job_id: Annotated[str, Path(max_length=64)], request: Request) -> JobView:
    record = _rt(request).jobs.cancel(job_id, request.state.key_name)
    if not record.finished:  # a running job stops at its next batch: usually well within this
        record = await wait_until(request, job_id, 10.0)
    return _view(record)


@router.get("", response_model=JobList, responses=error_responses(401, 422, 500),
            summary="The caller's recent jobs, newest first")
async def list_jobs(request: Request,
                    status: Annotated[Status | None, Query()] = None,
                    limit: Annotated[int, Query(ge=1, le=100)] = 20) -> JobList:
    records = _rt(request).jobs.list(request.state.key_name, status, limit)
    return JobList(jobs=[_view(r) for r in records])
