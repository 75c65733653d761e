"""How far bf16 voice models move the converted waveform, next to FreeVC's own sampling noise.

    .venv/bin/python -m bench.voice_precision [--weights DIR]

Converts ~5 s of espeak-ng speech with the full-size generated WavLM-Large + FreeVC in fp32,
then with WavLM and/or the synthesizer in bf16 (the ``VOICE_PRECISION=bf16`` option), and
reports max|diff| and mean|diff| of the waveform against fp32 with the same prior noise, for
noise_scale 1 (the official sampling, the service default) and 0 (the mean path). For scale,
it also reports how far two fp32 runs with different seeds are apart: with noise_scale 1 the
official model's output is itself random by that much.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench._machine import describe_machine
from bench.voice_convert import REFERENCE_TEXT, SOURCE_TEXT
from service.bundle import load_bundle
from service.dev.demo import ensure_demo_weights
from service.dev.samples import espeak_speech

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=ROOT / ".demo" / "weights")
    args = ap.parse_args()
    bundle = load_bundle(ensure_demo_weights(args.weights), torch.device("cpu"), torch.float32, "freevc",
                         warm=False, only=("freevc", "wavlm", "speaker"))
    source = espeak_speech(SOURCE_TEXT, "en").samples[:5 * 16000]
    reference = espeak_speech(REFERENCE_TEXT, "en+f3").samples
    g = torch.from_numpy(np.asarray(bundle.speaker.embed_utterance(reference), np.float32))[None]
    x = torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32))[None]
    wavlm = {"fp32": bundle.wavlm, "bf16": copy.deepcopy(bundle.wavlm).to(torch.bfloat16)}
    synth = {"fp32": bundle.freevc, "bf16": copy.deepcopy(bundle.freevc).to(torch.bfloat16)}

    def convert(w: str, s: str, seed: int, noise: float) -> tuple[np.ndarray, float]:
        dtype = next(synth[s].parameters()).dtype
        torch.manual_seed(seed)
        with torch.inference_mode():
            t0 = time.perf_counter()
            c = wavlm[w].extract(x).to(dtype)
            y = synth[s].infer(c, g=g.to(dtype), noise_scale=noise)[0, 0].float().numpy()
            return y, time.perf_counter() - t0

    print(f"machine: {describe_machine()}")
    convert("fp32", "fp32", 0, 1.0)  # warm-up
    for noise in (1.0, 0.0):
        want, secs = convert("fp32", "fp32", 0, noise)
        level = float(np.abs(want).mean())
        print(f"\nnoise_scale {noise:g}: fp32 {secs:.2f} s for {source.size / 16000:.1f} s of speech, "
              f"waveform mean|y| {level:.4f}")
        rows = [("fp32, another seed", "fp32", "fp32", 1)] if noise else []
        rows += [("WavLM bf16, synthesizer fp32", "bf16", "fp32", 0),
                 ("WavLM fp32, synthesizer bf16", "fp32", "bf16", 0),
                 ("both bf16 (VOICE_PRECISION=bf16)", "bf16", "bf16", 0)]
        for name, w, s, seed in rows:
            got, secs = convert(w, s, seed, noise)
            d = np.abs(got - want)
            print(f"  {name:34s} {secs:5.2f} s   max|diff| {d.max():.4f}   mean|diff| {d.mean():.5f} "
                  f"({100 * d.mean() / level:.1f} % of the level)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
