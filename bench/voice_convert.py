"""Voice conversion benchmark: speaker embedding (cold / cached), WavLM, synthesizer, whole conversion.

    .venv/bin/python -m bench.voice_convert [--weights DIR] [--device cpu|cuda] [--repeat 5]
        [--seconds 1 5] [--variants fp32 bf16-autocast bf16] [--compile] [--long 30] [--json OUT]

Full-size generated weights (24-layer WavLM-Large, FreeVC; written once to .demo/weights when
missing): speed does not depend on the weight values. Inputs are espeak-ng speech cut to each
length; the reference (target speaker) is another voice of the same length. Every number is the
median of ``--repeat`` runs after one untimed warm-up.

Variants: ``fp32`` (the reference), ``bf16-autocast`` (fp32 weights, matmuls/convs in bf16 via
``torch.autocast``), ``bf16`` (weights and activations bf16), ``fp16`` (GPU only). Each is
compared with fp32 on the same inputs with noise_scale 0: the content features' max|diff|
relative to their largest magnitude, and the waveform's mean|diff| relative to its mean level.
``--compile`` adds ``torch.compile`` of the fp32 synthesizer; its first call per input length
compiles (about a minute on 2 cores when inductor's on-disk cache is cold, seconds when warm).
``--long S`` also converts an S-second source in 5 s and 10 s chunks and in one piece (fp32,
median of 2 after the run whose output is compared).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench._machine import describe_machine, peak_rss_mb
from service.bundle import ModelBundle, load_bundle
from service.dev.demo import ensure_demo_weights
from service.dev.samples import espeak_speech
from service.types import Audio
from service.voice import VoiceConverter
from service.weights.catalog import FREEVC_FILE
from service.weights.formula import write_test_checkpoint

ROOT = Path(__file__).resolve().parent.parent

SR = 16000
SOURCE_TEXT = ("The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
               "It is easy to tell the depth of a well. These days a chicken leg is a rare dish.")
REFERENCE_TEXT = ("Rice is often served in round bowls. The juice of lemons makes fine punch. "
                  "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage.")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, repeat: int, warm: bool = True) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs (after one untimed run when ``warm``)."""
    if warm:
        fn()
    times = []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speech_of(text: str, voice: str, seconds: float) -> Audio:
    """espeak-ng speech cut (or tiled) to exactly ``seconds``."""
    samples = espeak_speech(text, voice=voice).samples
    n = round(seconds * SR)
    return Audio(np.resize(samples, n).astype(np.float32), SR)


def ensure_weights(weights: Path, config: str) -> Path:
    ensure_demo_weights(weights)
    path = weights / FREEVC_FILE[config]
    if not path.is_file():
        write_test_checkpoint(config, path)
    return weights


def variant_context(name: str, device: torch.device) -> contextlib.AbstractContextManager[None]:
    if name == "bf16-autocast":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def variant_dtype(name: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name, torch.float32)


def bench_variant(bundle: ModelBundle, name: str, sources: dict[float, Audio], refs: dict[float, Audio],
                  device: torch.device, repeat: int, baseline: dict[float, tuple[np.ndarray, np.ndarray]] | None
                  ) -> tuple[list[dict], dict[float, tuple[np.ndarray, np.ndarray]]]:
    """Rows for one variant; returns them and (content, waveform) per length for comparisons."""
    vc = VoiceConverter(bundle, noise_scale=0.0)
    ctx = lambda: variant_context(name, device)  # noqa: E731
    rows, outputs = [], {}
    for seconds, src in sources.items():
        ref = refs[seconds]

        def cold(ref: Audio = ref) -> None:
            vc.clear_embedding_cache()
            vc.speaker_embedding(ref)

        g_np, _ = vc.speaker_embedding(ref)
        g = torch.from_numpy(g_np.copy())[None].to(device)
        x = torch.from_numpy(src.samples)[None].to(device)
        with torch.inference_mode(), ctx():
            c = bundle.wavlm.extract(x)
            wav = bundle.freevc.infer(c, g=g, noise_scale=0.0)[0, 0].float().cpu().numpy()

            def whole(src: Audio = src, g_np: np.ndarray = g_np) -> None:
                vc.convert_with_embedding(src, g_np)

            row = {
                "variant": name, "seconds_of_speech": seconds,
                "speaker_cold_s": timed(cold, device, repeat),
                "speaker_cached_s": timed(lambda ref=ref: vc.speaker_embedding(ref), device, repeat),
                "wavlm_s": timed(lambda x=x: bundle.wavlm.extract(x), device, repeat),
                "synthesizer_s": timed(lambda c=c, g=g: bundle.freevc.infer(c, g=g, noise_scale=0.0), device, repeat),
                "convert_cached_embedding_s": timed(whole, device, repeat),
            }
        c_np = c.float().cpu().numpy()
        outputs[seconds] = (c_np, wav)
        if baseline is not None:
            c0, w0 = baseline[seconds]
            row["content_max_rel_diff"] = float(np.abs(c_np - c0).max() / np.abs(c0).max())
            row["wave_mean_rel_diff"] = float(np.abs(wav - w0).mean() / np.abs(w0).mean())
            row["wave_max_abs_diff"] = float(np.abs(wav - w0).max())
        rows.append(row)
        extra = (f"  c rel {row['content_max_rel_diff']:.1e}  wave mean rel {row['wave_mean_rel_diff']:.1e}"
                 f" max {row['wave_max_abs_diff']:.1e}"
                 if baseline is not None else "")
        print(f"  {name:<14} {seconds:>4g} s: speaker cold {row['speaker_cold_s']:7.3f}  cached "
              f"{row['speaker_cached_s'] * 1e3:6.2f} ms  wavlm {row['wavlm_s']:7.3f}  synth "
              f"{row['synthesizer_s']:7.3f}  convert {row['convert_cached_embedding_s']:7.3f}{extra}", flush=True)
    return rows, outputs


def bench_compile(bundle: ModelBundle, sources: dict[float, Audio], device: torch.device, repeat: int) -> list[dict]:
    rows = []
    compiled = torch.compile(bundle.freevc.infer, dynamic=False)
    g = torch.nn.functional.normalize(torch.rand(1, 256, device=device), dim=1)
    for seconds, src in sources.items():
        with torch.inference_mode():
            c = bundle.wavlm.extract(torch.from_numpy(src.samples)[None].to(device))
            t0 = time.perf_counter()
            compiled(c, g=g, noise_scale=0.0)
            compile_s = time.perf_counter() - t0
            ref = bundle.freevc.infer(c, g=g, noise_scale=0.0)
            err = float((compiled(c, g=g, noise_scale=0.0) - ref).abs().max())
            sec = timed(lambda c=c: compiled(c, g=g, noise_scale=0.0), device, repeat)
        rows.append({"variant": "fp32 compiled synthesizer", "seconds_of_speech": seconds,
                     "compile_s": compile_s, "synthesizer_s": sec, "wave_max_abs_diff": err})
        print(f"  compiled synth {seconds:>4g} s: first call (compiles) {compile_s:7.1f}  synth {sec:7.3f}  "
              f"max|diff| {err:.1e}", flush=True)
    return rows


def bench_long(bundle: ModelBundle, seconds: float, device: torch.device) -> list[dict]:
    src = speech_of(SOURCE_TEXT, "en-us", seconds)
    ref = speech_of(REFERENCE_TEXT, "en-gb", 5.0)
    rows = []
    whole = None
    for chunk_s in (5.0, 10.0, seconds):
        overlap = min(1.0, chunk_s / 4)
        vc = VoiceConverter(bundle, noise_scale=0.0, chunk_s=chunk_s, overlap_s=overlap, max_source_s=seconds + 1)
        out = vc.convert_voice(src, ref).samples
        if chunk_s == seconds:
            whole = out
        sec = timed(lambda vc=vc: vc.convert_voice(src, ref), device, 2, warm=False)
        rows.append({"source_s": seconds, "chunk_s": chunk_s, "overlap_s": overlap, "convert_s": sec, "out": out})
    for row in rows:
        out = row.pop("out")
        row["wave_mean_rel_diff_vs_one_chunk"] = diff = float(np.abs(out - whole).mean() / np.abs(whole).mean())
        print(f"  {seconds:g} s source, chunk {row['chunk_s']:5.1f} s, overlap {row['overlap_s']:.2f} s: "
              f"{row['convert_s']:7.2f} s  wave mean rel diff vs one piece {diff:.1e}", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=ROOT / ".demo" / "weights")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--config", default="freevc", choices=sorted(FREEVC_FILE))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seconds", type=float, nargs="+", default=[1.0, 5.0])
    ap.add_argument("--variants", nargs="+", default=None,
                    help="default: fp32 bf16-autocast bf16 (+ fp16 on cuda)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the fp32 synthesizer")
    ap.add_argument("--long", type=float, default=0.0, metavar="S", help="also an S-second source, chunk sizes")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    device = torch.device(args.device)
    variants = args.variants or (["fp32", "bf16-autocast", "bf16"] + (["fp16"] if device.type == "cuda" else []))
    if variants[0] != "fp32":
        variants.insert(0, "fp32")
    weights = ensure_weights(args.weights, args.config)
    results: dict[str, object] = {"machine": describe_machine(), "config": args.config, "repeat": args.repeat,
                                  "rows": []}
    print(f"machine: {json.dumps(results['machine'])}")
    sources = {s: speech_of(SOURCE_TEXT, "en-us", s) for s in args.seconds}
    refs = {s: speech_of(REFERENCE_TEXT, "en-gb", max(s, 1.5)) for s in args.seconds}
    baseline = None
    fp32_bundle = None
    for name in variants:
        t0 = time.perf_counter()
        bundle = load_bundle(weights, device, variant_dtype(name), freevc_config=args.config, warm=True,
                             only=("wavlm", "freevc", "speaker"))
        print(f"{name}: loaded and warmed in {time.perf_counter() - t0:.1f} s", flush=True)
        rows, outputs = bench_variant(bundle, name, sources, refs, device, args.repeat, baseline)
        results["rows"] += rows  # type: ignore[operator]
        if name == "fp32":
            baseline, fp32_bundle = outputs, bundle
        else:
            del bundle
    assert fp32_bundle is not None
    if args.compile:
        results["compiled"] = bench_compile(fp32_bundle, sources, device, args.repeat)
    if args.long > 0:
        results["long"] = bench_long(fp32_bundle, args.long, device)
    results["peak_rss_mb"] = peak_rss_mb()
    print(f"\nmedian seconds of {args.repeat} runs, {args.config} on {device} "
          f"({results['machine']['cpu'] if device.type == 'cpu' else results['machine']['gpu']}, "  # type: ignore[index]
          f"{torch.get_num_threads()} threads)")
    print(f"{'variant':<14}{'speech':>7}{'spk cold':>10}{'spk cached':>12}{'wavlm':>9}{'synth':>9}"
          f"{'convert':>9}{'c rel diff':>12}{'wave rel diff':>15}")
    for r in results["rows"]:  # type: ignore[attr-defined]
        diff_c = f"{r['content_max_rel_diff']:.1e}" if "content_max_rel_diff" in r else "-"
        diff_w = f"{r['wave_mean_rel_diff']:.1e}" if "wave_mean_rel_diff" in r else "-"
        print(f"{r['variant']:<14}{r['seconds_of_speech']:>6g}s{r['speaker_cold_s']:>10.3f}"
              f"{r['speaker_cached_s'] * 1e3:>10.2f}ms{r['wavlm_s']:>9.3f}{r['synthesizer_s']:>9.3f}"
              f"{r['convert_cached_embedding_s']:>9.3f}{diff_c:>12}{diff_w:>15}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
