"""The latency-vs-throughput plot: one line per system across its load points."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from modelyard.bench.report import PointResult


def plot(points: Sequence[PointResult], path: Path, title: str) -> Path | None:
    """Write a PNG (x: median req/s, y: median p99 and p50 latency, log scales); None when
    matplotlib is missing (the run still writes JSON and the table)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[bench] matplotlib is not installed: no plot (uv pip install matplotlib)")
        return None
    by_system: dict[str, list[PointResult]] = defaultdict(list)
    for p in points:
        if p.runs and math.isfinite(p.median_rps) and math.isfinite(p.median_p99_s):
            by_system[p.system].append(p)
    fig, ax = plt.subplots(figsize=(12, 6.5), dpi=110)
    for system, pts in by_system.items():
        pts.sort(key=lambda p: p.connections)
        xs = [p.median_rps for p in pts]
        (line,) = ax.plot(xs, [p.median_p99_s * 1e3 for p in pts], marker="o", label=system)
        ax.plot(
            xs,
            [p.median_p50_s * 1e3 for p in pts],
            marker=".",
            linestyle=":",
            color=line.get_color(),
        )
        for p in pts:
            ax.annotate(
                str(p.connections),
                (p.median_rps, p.median_p99_s * 1e3),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color=line.get_color(),
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("throughput, median req/s (log)")
    ax.set_ylabel("latency ms (log): p99 solid, p50 dotted")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.text(0.99, 0.01, "labels: open connections", ha="right", fontsize=7, alpha=0.7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
