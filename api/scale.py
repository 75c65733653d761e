"""The HTTP API on Ray Serve: an ``Ingress`` deployment serving the same FastAPI app (jobs,
store and queue included), rendering on ``Renderer`` replicas.

``serve deploy deploy/ray/serve_config.yaml`` imports :func:`app_builder`; ``lipsync serve
--ray`` calls :func:`build_application`. The app is built in the ingress replica itself
(``__serve_build_asgi_app__``), after its constructor has the renderer handle: nothing of it
has to be pickled.
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from service.runtime import ServiceRuntime
from service.scale.config import APP_NAME, ReplicaPlan
from service.scale.renderer import Renderer
from service.scale.routing import RemoteRenders, renderer_readiness
from service.settings import Settings, load_settings

from .main import create_app


@serve.deployment(name="Ingress", max_ongoing_requests=1000)
@serve.ingress()
class Ingress:
    def __init__(self, renderer: DeploymentHandle, workers: int, settings: dict[str, Any],
                 affinity: bool = True) -> None:
        self.renderer, self.workers, self.affinity = renderer, workers, affinity
        self.settings = Settings(**settings).model_copy(update={"preload_models": False})

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.settings, runtime_factory=self._runtime)

    def _runtime(self, settings: Settings) -> ServiceRuntime:
        return ServiceRuntime(settings, remote=lambda rt: RemoteRenders(self.renderer, rt.storage, self.affinity),
                              workers=self.workers, readiness=lambda: renderer_readiness(APP_NAME),
                              served_by="ingress")


def build_application(plan: ReplicaPlan, settings: Settings | None = None) -> Application:
    """The Ingress, running ``plan.most`` renders at once, bound to the Renderer deployment."""
    settings_json = (settings or load_settings()).model_dump(mode="json")
    renderer = Renderer.options(**plan.renderer_options()).bind(settings_json)
    return Ingress.bind(renderer, plan.most, settings_json, plan.affinity)


def app_builder(args: dict[str, Any]) -> Application:
    """For ``serve deploy``/``serve run``: ``args`` are :class:`ReplicaPlan`'s fields."""
    return build_application(ReplicaPlan(**args))
