"""Model benchmark: parameters, load and warm-up seconds, throughput, peak memory.

    .venv/bin/python -m bench.models [--weights DIR] [--device cpu|cuda] [--repeat 5]

Uses generated weights (written once to .demo/weights if DIR lacks them); speed does not
depend on the weight values. Reports the median of ``--repeat`` timed runs after a warm-up.
Wav2Lip variants are compared with the fp32 output of the same inputs; a variant counts as
usable when it stays within 1e-2 of fp32.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench._machine import describe_machine, peak_rss_mb
from models.freevc import load_freevc
from models.speaker_encoder import load_speaker_encoder
from models.wav2lip import load_wav2lip
from models.wavlm import load_wavlm
from service.dev.demo import ensure_demo_weights

ROOT = Path(__file__).resolve().parent.parent


def timed(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs, after one untimed warm-up."""
    with torch.inference_mode():
        fn()
        times = []
        for _ in range(repeat):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def wav2lip_variants(path: Path, device: torch.device) -> dict[str, tuple[torch.nn.Module, torch.dtype, bool]]:
    """name → (model, input dtype, channels_last)."""
    fp32 = load_wav2lip(path, device)
    variants = {"fp32 (BN folded)": (fp32, torch.float32, False),
                "fp32 unfolded (official)": (load_wav2lip(path, device, fold=False), torch.float32, False),
                "fp32 channels_last": (fp32.to(memory_format=torch.channels_last), torch.float32, True)}
    if device.type == "cuda":
        variants["fp16 channels_last"] = (load_wav2lip(path, device, torch.float16).to(
            memory_format=torch.channels_last), torch.float16, True)
    variants["bf16 channels_last"] = (load_wav2lip(path, device, torch.bfloat16).to(
        memory_format=torch.channels_last), torch.bfloat16, True)
    return variants


def bench_wav2lip(path: Path, device: torch.device, repeat: int, batches: list[int]) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    variants = wav2lip_variants(path, device)
    ref_model = variants["fp32 (BN folded)"][0]
    for b in batches:
        mel = (torch.rand(b, 1, 80, 16, generator=gen) * 8 - 4).to(device)
        faces = torch.rand(b, 6, 96, 96, generator=gen).to(device)
        with torch.inference_mode():
            ref = ref_model(mel, faces).float()
        for name, (model, dt, cl) in variants.items():
            f = faces.to(dt).contiguous(memory_format=torch.channels_last) if cl else faces.to(dt)
            m = mel.to(dt)
            with torch.inference_mode():
                err = float((model(m, f).float() - ref).abs().max())
            sec = timed(lambda model=model, m=m, f=f: model(m, f), device, repeat if b < 128 else max(2, repeat // 2))
            rows.append({"model": "wav2lip", "variant": name, "batch": b, "frames_per_s": b / sec,
                         "max_abs_diff_vs_fp32": err, "usable": err <= 1e-2})
            print(f"  wav2lip {name:<26} batch {b:>3}: {b / sec:8.1f} frames/s   max|diff| vs fp32 {err:.1e}",
                  flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=ROOT / ".demo" / "weights")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 128])
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    device = torch.device(args.device)
    weights = ensure_demo_weights(args.weights)
    results: dict[str, object] = {"machine": describe_machine(), "models": [], "throughput": []}
    print(f"machine: {json.dumps(results['machine'])}")

    loaders = {
        "wav2lip": lambda: load_wav2lip(weights / "wav2lip_gan.pth", device),
        "wavlm": lambda: load_wavlm(weights / "WavLM-Large.pt", device),
        "freevc": lambda: load_freevc(weights / "freevc.pth", "freevc", device),
        "speaker": lambda: load_speaker_encoder(None, device),
    }
    loaded = {}
    for name, load in loaders.items():
        rss0 = peak_rss_mb()
        t0 = time.perf_counter()
        loaded[name] = load()
        sec = time.perf_counter() - t0
        params = sum(p.numel() for p in loaded[name].parameters())
        row = {"model": name, "parameters": params, "load_s": sec,
               "weights_mb": params * 4 / 1e6, "peak_rss_growth_mb": peak_rss_mb() - rss0}
        results["models"].append(row)  # type: ignore[union-attr]
        print(f"  {name:<8} {params:>12,} params  load {sec:6.2f} s  peak RSS +{row['peak_rss_growth_mb']:.0f} MB"
              f" (weights {row['weights_mb']:.0f} MB)", flush=True)

    five_s = 0.05 * torch.randn(1, 80000, generator=torch.Generator().manual_seed(1)).to(device)
    wavlm, freevc, spk = loaded["wavlm"], loaded["freevc"], loaded["speaker"]
    with torch.inference_mode():
        c = wavlm.extract(five_s)
    g = torch.nn.functional.normalize(torch.rand(1, 256, device=device), dim=1)
    for name, fn in (("wavlm extract, 5 s audio", lambda: wavlm.extract(five_s)),
                     ("freevc infer, 5 s audio", lambda: freevc.infer(c, g=g, noise_scale=0.0)),
                     ("speaker embed, 5 s audio", lambda: spk.embed_utterance(five_s[0].cpu().numpy()))):
        sec = timed(fn, device, args.repeat)
        results["throughput"].append({"what": name, "seconds": sec})  # type: ignore[union-attr]
        print(f"  {name:<28} {sec:7.3f} s", flush=True)
    results["throughput"] += bench_wav2lip(weights / "wav2lip_gan.pth", device, args.repeat,  # type: ignore[operator]
                                           args.batches)
    results["peak_rss_mb"] = peak_rss_mb()
    print(f"peak RSS {results['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
