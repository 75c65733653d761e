"""The ingress side of rendering on Ray Serve: each job goes to a ``Renderer`` replica, chosen
by its input's cache key (cache affinity), and comes back as the job's result.

:class:`RemoteRenders` is the ``executor`` of the ingress's job queue: it runs in the queue's
worker threads (one per replica), so it blocks on the replica's answer, watching for a cancel
or a shutdown while it waits.
"""
from __future__ import annotations

import logging
from typing import Any

from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle

from ..errors import InterruptedJobError, ServiceError
from ..jobs.queue import Progress, RendererLostError
from ..jobs.records import JobRecord
from ..pipelines.input_cache import InputCache
from ..storage import Storage

log = logging.getLogger(__name__)

POLL_S = 0.25  # how often a waiting job looks at its cancel flag
LOST = (ActorDiedError, ActorUnavailableError, RayActorError)


class RemoteRenders:
    def __init__(self, renderer: DeploymentHandle, storage: Storage, affinity: bool = True) -> None:
        self.renderer, self.storage, self.affinity = renderer, storage, affinity

    def input_key(self, uri: str) -> str:
        """The input's cache key: URI + generation, as the replica's input cache keys it."""
        return InputCache.key(uri, self.storage.stat(uri).generation)

    def __call__(self, record: JobRecord, progress: Progress, should_stop: Any) -> dict[str, Any]:
        handle = self.renderer
        if self.affinity:
            handle = handle.options(multiplexed_model_id=self.input_key(record.request["user_video_gs"]))
        progress("rendering", 0.0)
        response = handle.render.remote({"json": record.to_json().decode()})
        try:
            while True:
                try:
                    answer: dict[str, Any] = response.result(timeout_s=POLL_S)
                    break
                except TimeoutError:
                    if should_stop():
                        response.cancel()
                        raise InterruptedJobError("the render was interrupted before it finished (canceled, or the "
                                                  "service is shutting down); nothing was written") from None
        except LOST as e:
            raise RendererLostError(f"the renderer replica died mid-job ({type(e).__name__})") from e
        if "error" in answer:
            raise remote_error(answer["error"])
        return answer["result"]  # type: ignore[no-any-return]


def remote_error(info: dict[str, Any]) -> ServiceError:
    """The replica's error, as the service error its code and status say (its message kept)."""
    error = ServiceError(info["message"])
    error.code, error.http_status = info["code"], int(info["status"])
    if info.get("retry_after_s") is not None:
        error.retry_after_s = info["retry_after_s"]  # type: ignore[attr-defined]
    return error


def renderer_readiness(app_name: str, deployment: str = "Renderer") -> str | None:
    """None once every replica of the renderer deployment is up (constructed: loaded and
    warm), else why not."""
    try:
        status = serve.status().applications[app_name].deployments[deployment]
    except (KeyError, RuntimeError) as e:
        return f"renderer deployment not found ({e})"
    if status.status != "HEALTHY":
        return f"renderers starting ({status.status}: {status.message or 'loading and warming the models'})"
    return None
