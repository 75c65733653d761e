"""How many renderer replicas, with what resources: one plan for ``lipsync serve --ray``, the
``serve deploy`` config and the KubeRay manifest."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

APP_NAME = "lipsync"
TARGET_ONGOING = 1  # renders per replica before Serve adds one: a replica renders one at a time


@dataclass(frozen=True)
class ReplicaPlan:
    """Fixed ``replicas``, or autoscaling between ``min_replicas`` and ``max_replicas`` on
    ongoing requests. ``gpus_per_replica`` 1 gives each replica its own GPU."""

    replicas: int | None = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    affinity: bool = True
    """Route each render by its input's cache key (off only to measure what affinity buys)."""

    def __post_init__(self) -> None:
        auto = self.min_replicas is not None or self.max_replicas is not None
        if auto:
            lo, hi = self.min_replicas or 1, self.max_replicas or max(1, self.min_replicas or 1)
            if not 0 < lo <= hi:
                raise ValueError(f"need 1 <= --min-replicas <= --max-replicas, got {lo} and {hi}")
        elif self.replicas is None or self.replicas < 1:
            raise ValueError(f"--replicas must be at least 1, got {self.replicas}")
        if self.gpus_per_replica < 0 or self.cpus_per_replica <= 0:
            raise ValueError("--gpus-per-replica must be >= 0 and --cpus-per-replica > 0")

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None or self.max_replicas is not None

    @property
    def most(self) -> int:
        """The most replicas there can be: how many jobs the ingress runs at once."""
        if self.autoscaling:
            return self.max_replicas or max(1, self.min_replicas or 1)
        return int(self.replicas or 1)

    def renderer_options(self) -> dict[str, Any]:
        """``Renderer.options(...)`` / the deployment's entry in a Serve config."""
        options: dict[str, Any] = {"ray_actor_options": {"num_cpus": self.cpus_per_replica,
                                                         "num_gpus": self.gpus_per_replica}}
        if self.autoscaling:
            options["autoscaling_config"] = {"min_replicas": self.min_replicas or 1, "max_replicas": self.most,
                                             "target_ongoing_requests": TARGET_ONGOING}
        else:
            options["num_replicas"] = self.replicas
        return options

    def as_args(self) -> dict[str, Any]:
        """The builder's ``args`` in a Serve config (``api.scale:app_builder``)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

