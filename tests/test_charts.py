"""bench/charts.py draws PNGs from both results layouts (e2e and scale)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.charts import e2e_chart, main, scale_chart

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEPS = ("download", "tts", "voice_conversion", "lipsync", "encode", "upload")


def _runs(lipsync: float) -> dict[str, Any]:
    steps = {s: [0.1, 0.2, 0.15] for s in STEPS} | {"lipsync": [lipsync, lipsync * 1.1, lipsync * 0.9]}
    return {"totals": [lipsync + 0.5, lipsync + 0.7, lipsync + 0.6], "steps": steps}


E2E: dict[str, Any] = {
    "machine": {"host": "test", "cpu": "CPU", "gpu": None},
    "workloads": {w: {"optimized": _runs(1.0 * k), "baseline": _runs(5.0 * k), "optimized_bf16": _runs(0.5 * k)}
                  for k, w in ((1, "word"), (5, "sentence"))},
}
SCALE: dict[str, Any] = {
    "machine": {"host": "test"}, "device": "cpu", "jobs": 4, "inputs": 2,
    "rows": [{"replicas": n, "affinity": a, "jobs_per_min": 5.0 * n + a, "p50_s": 3.0, "p95_s": 5.0,
              "frames_hit_rate": 0.5 + 0.25 * a} for n in (1, 2) for a in (True, False)],
}


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_SIGNATURE) and 5_000 < len(data) < 200_000


def test_e2e_chart_is_a_png(tmp_path: Path) -> None:
    out = e2e_chart(E2E, tmp_path / "e2e.png")
    assert out == tmp_path / "e2e.png" and _is_png(out)


def test_scale_chart_is_a_png(tmp_path: Path) -> None:
    out = scale_chart(SCALE, tmp_path / "sub" / "scale.png")
    assert _is_png(out)


def test_cli_writes_each_chart_next_to_its_json(tmp_path: Path) -> None:
    (tmp_path / "a-e2e.json").write_text(json.dumps(E2E))
    (tmp_path / "b-scale.json").write_text(json.dumps(SCALE))
    (tmp_path / "c-models.json").write_text(json.dumps({"machine": {}, "models": {}}))
    assert main([str(tmp_path / n) for n in ("a-e2e.json", "b-scale.json", "c-models.json")]) == 0
    assert _is_png(tmp_path / "a-e2e.png") and _is_png(tmp_path / "b-scale.png")
    assert not (tmp_path / "c-models.png").exists()
    assert main([str(tmp_path / "c-models.json")]) == 1
