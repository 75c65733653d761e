"""``lipsync serve``: the HTTP API, embedded (one process, uvicorn) or on Ray Serve (``--ray``)."""
from __future__ import annotations

import argparse
import logging
import signal
import threading

import torch

from ..settings import Settings
from .args import add_weights_dir

log = logging.getLogger(__name__)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_weights_dir(p)
    p.add_argument("--ray", action="store_true", help="serve through Ray Serve: an ingress plus renderer replicas")
    r = p.add_argument_group("Ray Serve (with --ray)")
    r.add_argument("--address", default=None, help="Ray cluster to join (default $RAY_ADDRESS; unset: start a "
                                                   "local cluster in this process)")
    r.add_argument("--replicas", type=int, default=None, metavar="N", help="fixed number of renderer replicas "
                                                                          "(default 1)")
    r.add_argument("--min-replicas", type=int, default=None, metavar="N",
                   help="autoscale on ongoing renders between --min-replicas and --max-replicas")
    r.add_argument("--max-replicas", type=int, default=None, metavar="N")
    r.add_argument("--gpus-per-replica", type=float, default=None, metavar="G",
                   help="GPUs per renderer (default 1 when CUDA is visible, else 0)")
    r.add_argument("--cpus-per-replica", type=float, default=1.0, metavar="C", help="CPUs per renderer (default 1)")
    r.add_argument("--no-affinity", action="store_true",
                   help="route renders without regard to which replica holds the input (to measure affinity)")
    r.add_argument("--num-cpus", type=int, default=None, metavar="N",
                   help="CPUs of the local cluster (default: all); ignored with --address")


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    if not args.ray:
        import uvicorn

        from api.main import create_app

        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None)
        return 0
    return _serve_ray(args, settings)


def _serve_ray(args: argparse.Namespace, settings: Settings) -> int:
    import ray
    from ray import serve

    from api.scale import build_application

    from ..scale.config import APP_NAME, ReplicaPlan

    gpus = args.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if torch.cuda.is_available() else 0.0
    plan = ReplicaPlan(replicas=args.replicas if args.replicas is not None or args.min_replicas is not None
                       or args.max_replicas is not None else 1,
                       min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                       gpus_per_replica=gpus, cpus_per_replica=args.cpus_per_replica, affinity=not args.no_affinity)
    address = args.address or settings.ray_address
    ray.init(address=address, num_cpus=None if address else args.num_cpus, include_dashboard=False,
             log_to_driver=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build_application(plan, settings), name=APP_NAME, route_prefix="/", blocking=False)
        log.info("serving on http://%s:%d through Ray Serve (%s)", args.host, args.port, plan)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
