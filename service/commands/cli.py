"""``lipsync``: the command line of the service: lip-sync, speech, voice conversion, the HTTP
service (embedded or on Ray Serve), its jobs, weights, the demo, the benchmark and dev tools."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ..logs import configure_logging
from ..memory import reuse_freed_memory
from ..settings import SettingsError, load_settings
from .exit_codes import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_OK


def _weights_make_test(args: argparse.Namespace) -> int:
    from ..weights.catalog import FREEVC_FILE, SPEAKER_FILE, WAV2LIP_FILE, WAVLM_FILE
    from ..weights.formula import NOT_TRAINED_BANNER, write_test_checkpoint

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(NOT_TRAINED_BANNER, file=sys.stderr)
    jobs = [("wav2lip", WAV2LIP_FILE, {}), *((c, FREEVC_FILE[c], {}) for c in FREEVC_FILE),
            ("wavlm", WAVLM_FILE, {"layers": args.wavlm_layers})]
    if args.speaker:
        jobs.append(("speaker", SPEAKER_FILE, {}))
    for kind, name, opts in jobs:
        path = write_test_checkpoint(kind, out / name, tag=args.tag, **opts)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, generated, NOT trained)")
    (out / "GENERATED_WEIGHTS_NOT_TRAINED.txt").write_text(NOT_TRAINED_BANNER + "\n")
    print(NOT_TRAINED_BANNER, file=sys.stderr)
    return EXIT_OK


def _weights_check(args: argparse.Namespace) -> int:
    from ..weights.check import check_weights, format_report

    statuses = check_weights(Path(args.dir), verify_hash=args.verify_hash)
    print(format_report(statuses))
    bad = [s for s in statuses if s.status != "ok" and (s.file.required or s.status != "missing")]
    return EXIT_ERROR if bad else EXIT_OK


def _weights_fetch(args: argparse.Namespace) -> int:
    from ..weights.catalog import CATALOG
    from ..weights.fetch import FetchError, fetch_file

    names = set(args.only or [])
    unknown = names - {w.name for w in CATALOG}
    if unknown:
        print(f"error: unknown file(s) {sorted(unknown)}; known: {[w.name for w in CATALOG]}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    failed = 0
    for w in CATALOG:
        if names and w.name not in names:
            continue
        try:
            path = fetch_file(w, Path(args.out), progress=sys.stderr)
            print(f"{w.name}: ok ({path})")
        except FetchError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return EXIT_ERROR if failed else EXIT_OK


def _sync(args: argparse.Namespace) -> int:
    from .sync import run_sync

    return run_sync(args, args.settings)


def _speak(args: argparse.Namespace) -> int:
    from .speak import run_speak

    return run_speak(args, args.settings)


def _convert(args: argparse.Namespace) -> int:
    from .convert import run_convert

    return run_convert(args, args.settings)


def _serve(args: argparse.Namespace) -> int:
    from .serve import run_serve

    return run_serve(args, args.settings)


def _dev(args: argparse.Namespace) -> int:
    from .dev import run_dev

    return run_dev(args)


def _jobs(args: argparse.Namespace) -> int:
    from .jobs import run_jobs

    return run_jobs(args)


def _bench(args: argparse.Namespace) -> int:
    return run_bench(args.bench_args)


def run_bench(bench_args: list[str]) -> int:
    """Run ``bench/e2e.py`` with ``bench_args`` (everything after ``lipsync bench``)."""
    import subprocess

    if bench_args[:1] == ["--"]:
        bench_args = bench_args[1:]
    root = Path(__file__).resolve().parents[2]
    if not (root / "bench" / "e2e.py").is_file():
        print(f"error: {root / 'bench'} not found: `lipsync bench` runs from a source checkout", file=sys.stderr)
        return EXIT_ERROR
    return subprocess.run([sys.executable, "-m", "bench.e2e", *bench_args], check=False, cwd=root).returncode


def _demo(args: argparse.Namespace) -> int:
    from ..dev.demo import run_demo

    return run_demo(Path(args.work_dir), device=args.device)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lipsync", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("weights", help="download, check or generate model weights")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    mk = wsub.add_parser("make-test", help="write checkpoints with GENERATED (untrained) weights "
                                           "in the official layouts")
    mk.add_argument("--out", required=True, help="folder to write into (e.g. ./weights)")
    mk.add_argument("--wavlm-layers", type=int, default=24,
                    help="transformer layers of the WavLM-Large structure (default 24, full size)")
    mk.add_argument("--tag", default="dev-1", help="seed tag of the generated weights")
    mk.add_argument("--speaker", action="store_true",
                    help="also write a generated pretrained_bak_5805000.pt speaker encoder")
    mk.set_defaults(func=_weights_make_test)
    ck = wsub.add_parser("check", help="list the expected files: present / missing / wrong layout")
    ck.add_argument("dir", nargs="?", default=None, help="weights folder (default $WEIGHTS_DIR)")
    ck.add_argument("--verify-hash", action="store_true", help="also compare SHA-256 where known")
    ck.set_defaults(func=_weights_check)
    fe = wsub.add_parser("fetch", help="download the official checkpoints, optional ones and the S3FD face "
                                       "detector included (resumable, verified)")
    fe.add_argument("--out", default=None, help="weights folder (default $WEIGHTS_DIR)")
    fe.add_argument("--only", nargs="+", metavar="FILE", help="only these file names (default: every file)")
    fe.set_defaults(func=_weights_fetch)

    from .sync import add_sync_arguments

    sy = sub.add_parser("sync", help="lip-sync a face video or image to speech; writes an mp4")
    add_sync_arguments(sy)
    sy.set_defaults(func=_sync)

    from .speak import add_speak_arguments

    sp = sub.add_parser("speak", help="text to speech (espeak-ng offline, gtts online) into a wav")
    add_speak_arguments(sp)
    sp.set_defaults(func=_speak)

    from .convert import add_convert_arguments

    cv = sub.add_parser("convert", help="FreeVC: speak SOURCE speech in the voice of TARGET (audio or video)")
    add_convert_arguments(cv)
    cv.set_defaults(func=_convert)

    from .serve import add_serve_arguments

    sv = sub.add_parser("serve", help="serve the HTTP API: embedded (uvicorn) or on Ray Serve (--ray)")
    add_serve_arguments(sv)
    sv.set_defaults(func=_serve)

    from .jobs import add_jobs_arguments

    jb = sub.add_parser("jobs", help="submit, follow and cancel jobs of a running service (--url, $LIPSYNC_URL)")
    add_jobs_arguments(jb)
    jb.set_defaults(func=_jobs)

    b = sub.add_parser("bench", help="end-to-end benchmark: baseline vs optimized (bench/e2e.py)",
                       add_help=False)  # its options, --help included, belong to bench/e2e.py
    b.add_argument("bench_args", nargs=argparse.REMAINDER, help="passed to bench/e2e.py (see --help there)")
    b.set_defaults(func=_bench)

    from .dev import add_dev_arguments

    dv = sub.add_parser("dev", help="tools for trying the service locally: `lipsync dev gcs` (a GCS emulator)")
    add_dev_arguments(dv)
    dv.set_defaults(func=_dev)

    d = sub.add_parser("demo", help="offline demo with generated weights: load, warm up, report",
                       description="The main job, offline: generated (untrained) weights, a generated user video "
                                   "in a local GCS emulator, the real HTTP service, two requests (a new video, "
                                   "then a repeat that hits the caches); writes <work-dir>/demo_lipsync.mp4.")
    d.add_argument("--work-dir", default=".demo", help="where generated weights and outputs go (default .demo)")
    d.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto")
    d.set_defaults(func=_demo)
    return p


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C (a BaseException, so no ``except Exception`` stops
    it), and every ``finally``/abort on the way removes its temp output."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # argparse would claim the script's own options (--help, --repeat ...)
        return run_bench(argv[1:])
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    configure_logging(level)
    if args.command not in ("jobs", "dev"):  # a client of a running service: the server's settings are not its own
        try:
            settings = load_settings()
        except SettingsError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        configure_logging(level, settings.log_format)
        if getattr(args, "weights_dir", None):  # --weights-dir wins over $WEIGHTS_DIR
            settings = settings.model_copy(update={"weights_dir": Path(args.weights_dir).expanduser().resolve()})
        args.settings = settings
        if settings.reuse_freed_memory:
            reuse_freed_memory()
        for attr in ("out", "dir"):
            if hasattr(args, attr) and getattr(args, attr) is None:
                setattr(args, attr, str(settings.weights_dir))
    main_thread = threading.current_thread() is threading.main_thread()  # only it may take signals
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None  # docker stop, kill
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
