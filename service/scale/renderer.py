"""The ``Renderer`` deployment: one model bundle per replica, loaded and warmed in its
constructor, one render at a time.

Each render carries its input's cache key (URI + generation) as Serve's multiplexed model
id. Registering the key through a ``@serve.multiplexed`` loader tells Serve's router that
this replica "holds" that input, so repeats of a user's video come back to the replica that
already has its decoded frames, face boxes and face features in memory.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from ray import serve

from ..errors import ServiceError
from ..logs import configure_logging
from ..runtime import ServiceRuntime
from ..settings import Settings

log = logging.getLogger(__name__)

INPUTS_PER_REPLICA = 64  # input keys a replica advertises; the LRU end is forgotten first


# Two requests may be routed to a replica, but it renders one at a time (its device gate):
# the slack keeps a repeat routable to the replica that holds its input even while Serve's
# view of that replica's queue is a moment stale.
@serve.deployment(name="Renderer", max_ongoing_requests=2, health_check_period_s=5)
class Renderer:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        s = Settings(**settings)
        configure_logging(log_format=s.log_format)
        # replicas on one machine must not share (or clean up) each other's request folders,
        # but they do share the artefact store (by default in the common work folder)
        s = s.model_copy(update={"work_dir": s.work_dir / f"replica-{self.replica_id}", "preload_models": True,
                                 "cache_store": s.cache_store or str(s.work_dir / "cache")})
        self.rt = ServiceRuntime(s, jobs=False, served_by=f"renderer/{self.replica_id}")
        self.rt.preload()  # loaded and warm before Serve routes anything here
        log.info("renderer replica %s ready on %s", self.replica_id, self.rt.device)

    @serve.multiplexed(max_num_models_per_replica=INPUTS_PER_REPLICA)
    async def hold(self, input_key: str) -> str:
        """Serve's affinity bookkeeping: the caches themselves live in the pipeline."""
        return input_key

    async def render(self, record: dict[str, Any]) -> dict[str, Any]:
        """Render one job (its JSON record): ``{"result": ...}`` or ``{"error": {"code",
        "message", "status"}}`` (errors travel as data: their messages stay the caller's)."""
        from ..jobs.records import JobRecord

        key = serve.get_multiplexed_model_id()
        if key:
            await self.hold(key)
        job = JobRecord.from_json(record["json"])
        stop = threading.Event()
        try:
            result = await asyncio.to_thread(self.rt.execute, job, _no_progress, stop.is_set)
        except asyncio.CancelledError:
            stop.set()  # the job was canceled: the render stops at its next step or batch
            raise
        except ServiceError as e:
            return {"error": {"code": e.code, "message": str(e), "status": e.http_status,
                              "retry_after_s": getattr(e, "retry_after_s", None)}}
        return {"result": result}

    async def check_health(self) -> None:
        if not self.rt.ready:
            raise RuntimeError(f"renderer not ready: {self.rt.not_ready_reason}")


def _no_progress(step: str, fraction: float) -> None:
    """Progress stays in the replica for now (the ingress shows the step as ``rendering``)."""
