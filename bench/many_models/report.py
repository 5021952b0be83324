"""Results of the many-models benchmark: the side-by-side table, the goals, the ceiling any
placement policy could reach, and the section appended to BENCHMARKS.md."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.bench.report import append_under_heading
from modelyard.bench.stats import RunStats

HEADING = "## Many models"
METHOD = """\
## Many models

`bench/many_models/run.py` serves a fleet of N small models from one registry whose artifacts
live on a real S3-API server on this machine (`rclone serve s3`, pinned to core 1 with the load
generator), and compares, in one run:

- **A**: the naive design, weights fetched from object storage on every request
  (`bench/many_models/naive_app.py`: raw ASGI on uvicorn; per request it downloads the version's
  files through ModelYard's artifact store, loads them with the same ModelYard runtime, predicts,
  and drops the model);
- **B**: ModelYard with a RAM budget (`MODELYARD_CACHE_BYTES`) of 25 % of the total model bytes,
  *total model bytes* being what all models take in RAM as ModelYard measures them (the sum of
  `memory_bytes` with every model loaded, read from C); models load on first use, from the local
  disk tier (filled by C's start, as on a box that has been running) or from S3;
- **C**: ModelYard with every model preloaded (`--preload` all, unbounded budget).

Fleet: 60 % ONNX MLP classifiers with random weights, log-uniform sizes 20 kB - 6 MB; 20 %
scikit-learn (LogisticRegression, small RandomForests; skops); 20 % XGBoost (10-150 trees).
Requests: `wrk -t1 -c64`, one V2 JSON row per request, the model drawn from Zipf(s = 1.1) over
the fleet by a Lua script (popularity ranks shuffled independently of kind and size). Server
pinned to core 0, wrk and the S3 server to core 1. Each mode gets a discarded warm-up, then one
measured run. Hit ratio, loads/s and evictions/s come from the server's `GET /v2/fleet/cache`
counters over the measured run. *Static ceiling*: the hit ratio of the best fixed set of models
fitting the budget (greedy by request share per byte): no eviction policy that loads on demand
can do much better on this mix.

What limits B: every miss is a load (verify the disk copy, build the engine session, warm up),
which costs about the CPU of one naive request of A, on the same core that serves. So B's
throughput is about C's divided by (1 + miss ratio x load cost / request cost), and B / A is at
most about 1 / miss ratio. Both goals (B >= 50x A, B >= 85 % of C) need a miss ratio of ~2 % or
less; under Zipf(1.1) over 200 models, 25 % of the bytes cannot hold models that draw 98 % of
the requests (see the static ceiling of each run), and plain LRU (ModelYard's eviction policy)
stays well below that ceiling because one large, rarely used model evicts many small popular
ones. A size- and frequency-aware policy (e.g. GDSF) would close part of that gap.

"""


@dataclass
class ModeResult:
    mode: str
    what: str
    stats: RunStats
    hit_ratio: float | None = None
    loads_per_s: float = 0.0
    evictions_per_s: float = 0.0
    rss_mib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def cache_delta(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, float]:
    """Hit ratio, loads/s and evictions/s between two ``GET /v2/fleet/cache`` snapshots."""
    b, a = before["stats"], after["stats"]
    hits, misses = a["hits"] - b["hits"], a["misses"] - b["misses"]
    return {
        "hit_ratio": hits / (hits + misses) if hits + misses else math.nan,
        "loads_per_s": (a["loads"] - b["loads"]) / seconds,
        "evictions_per_s": (a["evictions"] - b["evictions"]) / seconds,
    }


def static_ceiling(weights: list[float], sizes: list[int], budget: int) -> float:
    """Request share covered by the greedy best fixed set of models within ``budget`` bytes."""
    order = sorted(range(len(weights)), key=lambda i: weights[i] / max(sizes[i], 1), reverse=True)
    used, covered = 0, 0.0
    for i in order:
        if used + sizes[i] <= budget:
            used += sizes[i]
            covered += weights[i]
    return covered


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def table(results: dict[str, ModeResult]) -> str:
    a, c = results.get("A"), results.get("C")
    head = (
        "| mode | what | req/s | p50 ms | p99 ms | errors | hit ratio | loads/s | evictions/s "
        "| RSS MiB | req/s vs A | req/s vs C | p99 vs C |"
    )
    lines = [head, "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results.values():
        s = r.stats
        vs_a = f"{s.rps / a.stats.rps:,.1f}x" if a and a.stats.rps else "-"
        vs_c = f"{s.rps / c.stats.rps:.2f}x" if c and c.stats.rps else "-"
        p99_c = f"{s.p99_s / c.stats.p99_s:.2f}x" if c and c.stats.p99_s else "-"
        ratio = "-" if r.hit_ratio is None else f"{r.hit_ratio:.3f}"
        lines.append(
            f"| {r.mode} | {r.what} | {_fmt(s.rps)} | {_fmt(s.p50_s * 1e3)} | "
            f"{_fmt(s.p99_s * 1e3)} | {s.errors} | {ratio} | {_fmt(r.loads_per_s)} | "
            f"{_fmt(r.evictions_per_s)} | {_fmt(r.rss_mib)} | {vs_a} | {vs_c} | {p99_c} |"
        )
    return "\n".join(lines)


def goals(results: dict[str, ModeResult]) -> list[str]:
    a, b, c = results["A"].stats, results["B"].stats, results["C"].stats
    checks = [
        ("B >= 50x A in req/s", b.rps / a.rps if a.rps else math.inf, 50.0, True),
        ("B >= 85 % of C in req/s", b.rps / c.rps if c.rps else 0.0, 0.85, True),
        ("B p99 <= 3x C p99", b.p99_s / c.p99_s if c.p99_s else math.inf, 3.0, False),
    ]
    out = []
    for text, value, target, at_least in checks:
        met = value >= target if at_least else value <= target
        out.append(f"{text}: {value:.2f} -> {'met' if met else 'MISSED'}")
    errors = sum(r.stats.errors for r in results.values())
    out.append(f"no errors: {errors} -> {'met' if errors == 0 else 'MISSED'}")
    return out


def record(path: Path, section: str) -> None:
    """Append ``section`` under the "Many models" heading (written, with the method, at the end
    of the file when missing); other benchmarks' sections stay as they are."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if HEADING not in old:
        old = old.rstrip("\n") + "\n\n" + METHOD
    path.write_text(append_under_heading(old, HEADING, section, preamble=METHOD))
