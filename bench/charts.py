"""PNG charts of benchmark results, written next to their JSON (same stem).

    .venv/bin/python -m bench.charts bench/results/RESULTS.json [...]

- ``bench/e2e.py`` results (``{"workloads": {workload: {pipeline: {"totals": [s, ...],
  "steps": {step: [s, ...]}}}}}``): one panel per workload, one horizontal bar per pipeline,
  its median step times stacked, the median total marked and written at the bar's end.
- ``bench/scale.py`` results (``{"rows": [{"replicas", "affinity", "jobs_per_min",
  "frames_hit_rate", ...}]}``): jobs/min against replicas, one line per affinity setting,
  each point labelled with its frames-cache hit rate.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no display, no global state).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)

STEPS = ("download", "tts", "voice_conversion", "lipsync", "encode", "upload")
STEP_COLOURS = {"download": "#8c8c8c", "tts": "#e6ab02", "voice_conversion": "#1b9e77",
                "lipsync": "#d95f02", "encode": "#7570b3", "upload": "#66a61e"}
DPI = 100  # with the sizes below: PNGs of ~30-60 KB
# both pipelines encode in a thread of their own while lip-sync runs (service/pipelines/common.py)
ENCODE_NOTE = ("Encode (hatched) overlaps lipsync: it runs in its own thread during lip-sync (in the optimized "
               "pipeline, and in the baseline too),\nso its bar is busy time, not extra wall time; stacks exceed the "
               "total. | and the number: the median total.")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _pipelines(runs: dict[str, Any]) -> list[str]:
    """Baseline first, then optimized, then the other variants in file order."""
    first = [p for p in ("baseline", "optimized") if p in runs]
    return first + [p for p in runs if p not in first]


def e2e_chart(result: dict[str, Any], out: Path) -> Path:
    """Stacked median step times per pipeline, one panel per workload; writes ``out`` (PNG)."""
    workloads = result["workloads"]
    rows = [len(runs) for runs in workloads.values()]
    fig = Figure(figsize=(9, 1.2 + 0.45 * sum(rows) + 0.9 * len(rows)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(workloads), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [max(1, n) for n in rows]})[:, 0]
    for ax, (workload, runs) in zip(axes, workloads.items(), strict=True):
        names = _pipelines(runs)
        for y, name in enumerate(names):
            left = 0.0
            for step in STEPS:
                sec = _median(runs[name]["steps"].get(step, []))
                hatch = "//" if step == "encode" else None
                ax.barh(y, sec, left=left, color=STEP_COLOURS[step], hatch=hatch, edgecolor="white",
                        linewidth=0.5, label=step if y == 0 else None)
                left += sec
            total = _median(runs[name]["totals"])
            ax.plot([total, total], [y - 0.4, y + 0.4], color="black", linewidth=1.5)
            ax.annotate(f"{total:.2f} s", (max(left, total), y), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=8)
        ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{workload}", loc="left", fontsize=10)
        ax.set_xlabel("seconds (median)", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(x=0.12)
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, [lab.replace("_", " ") for lab in labels], loc="outside right upper",
               fontsize=8, frameon=False)
    machine = result.get("machine", {})
    fig.suptitle(f"End to end per step — {machine.get('host', '?')} ({machine.get('cpu', '?')}, "
                 f"{machine.get('gpu') or 'no GPU'})", fontsize=10)
    fig.supxlabel(ENCODE_NOTE, fontsize=7, style="italic")
    return _save(fig, out)


def scale_chart(result: dict[str, Any], out: Path) -> Path:
    """Jobs/min against replicas, one line per affinity setting, hit rates labelled; writes ``out``."""
    fig = Figure(figsize=(6, 4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for affinity, style in ((True, "o-"), (False, "s--")):
        rows = sorted((r for r in result["rows"] if r["affinity"] is affinity), key=lambda r: r["replicas"])
        if not rows:
            continue
        xs, ys = [r["replicas"] for r in rows], [r["jobs_per_min"] for r in rows]
        ax.plot(xs, ys, style, label=f"affinity {'on' if affinity else 'off'}")
        for r in rows:
            # "on" labels above left, "off" below right: equal points at one replica stay readable
            ax.annotate(f"hit {r['frames_hit_rate']:.2f}", (r["replicas"], r["jobs_per_min"]),
                        xytext=(-6, 6) if affinity else (6, -12), textcoords="offset points", fontsize=8,
                        ha="right" if affinity else "left")
    replicas = sorted({r["replicas"] for r in result["rows"]})
    ax.set_xticks(replicas)
    ax.set_xlim(min(replicas) - 0.5, max(replicas) + 0.5)
    ax.set_ylim(0, 1.15 * max(r["jobs_per_min"] for r in result["rows"]))  # room for the labels
    ax.set_xlabel("replicas")
    ax.set_ylabel("jobs/min")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    machine = result.get("machine", {})
    ax.set_title(f"Scale: {result.get('jobs', '?')} jobs over {result.get('inputs', '?')} inputs — "
                 f"{machine.get('host', '?')}, {result.get('device', '?')}\n(labels: frames-cache hit rate)",
                 fontsize=9)
    return _save(fig, out)


def _save(fig: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    # no timestamp in the PNG's metadata: regenerating a chart from the same JSON changes no bytes
    fig.savefig(out, format="png", metadata={"Software": None})
    log.info("chart: %s (%d KB)", out, out.stat().st_size // 1024)
    return out


def chart_for(json_path: Path) -> Path | None:
    """Write the chart of the results file ``json_path`` next to it (``.png``, same stem); None
    when the file is neither an e2e nor a scale result."""
    result = json.loads(json_path.read_text())
    out = json_path.with_suffix(".png")
    if "workloads" in result:
        return e2e_chart(result, out)
    if "rows" in result:
        return scale_chart(result, out)
    log.warning("%s: not an e2e or scale result, no chart", json_path)
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.charts", description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, nargs="+", help="bench/e2e.py or bench/scale.py JSON files")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = [chart_for(path) for path in args.results]
    return 0 if any(written) else 1


if __name__ == "__main__":
    sys.exit(main())
