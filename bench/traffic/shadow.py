"""Shadow cost benchmark: the primary's latency with a shadow copy of every request vs without.

    .venv/bin/python bench/traffic/shadow.py                    # 30 x 1 s slices per point
    .venv/bin/python bench/traffic/shadow.py --slices 4 --no-record      # smoke run
    .venv/bin/python bench/traffic/shadow.py --no-pin           # on a busy shared machine

One server serves two endpoints over the same model version: ``plain`` (one route) and
``shadowed`` (the same route plus a shadow of another version of the same model on every
request, ``fraction: 1.0``, argmax comparison). An open-loop generator sends a fixed rate,
alternating short slices between the two endpoints (ABBA), and measures latency from each
request's scheduled send time. Server on core 0 and generator on core 1 unless ``--no-pin``.
Reported per rate: pooled p50/p99/p99.9 per endpoint, the median over slices of each slice's
p99 and its ratio shadowed/plain (goal <= 1.10), the server's CPU, and from the registry's
serving stats how many shadows ran, were dropped (box busy) and agreed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.traffic import common
from bench.traffic.common import (
    ROOT,
    Run,
    interleaved,
    machine_line,
    ms,
    open_loop,
    pin_client,
    placement,
    record,
    serve,
)

ENDPOINTS = ("plain", "shadowed")


def setup(registry_dir: Path) -> bytes:
    """Push the model twice, apply the two endpoints; returns the request body."""
    import orjson

    from bench.models import build_onnx, v2_request
    from modelyard.registry.endpoints import EndpointStore
    from modelyard.registry.registry import Registry

    model = build_onnx("logreg", registry_dir.parent / "models")
    with Registry(registry_dir) as reg:
        reg.push(model, name="logreg", alias="production")
        reg.push(model, name="logreg", alias="shadow")
        store = EndpointStore(reg)
        route = {"name": "main", "model": "logreg", "version": "production", "weight": 100}
        store.apply({"name": "plain", "routes": [route]})
        shadow = {
            "model": "logreg",
            "version": "shadow",
            "fraction": 1.0,
            "compare": {"output": "probabilities", "kind": "argmax"},
        }
        store.apply({"name": "shadowed", "routes": [route], "shadows": [shadow]})
    return orjson.dumps(v2_request())


def shadow_counts(registry_dir: Path) -> dict[str, float]:
    from modelyard.registry.registry import Registry
    from modelyard.traffic.shadow_report import summarize_shadows
    from modelyard.traffic.stats_store import read_rows

    with Registry(registry_dir) as reg:
        found = summarize_shadows(read_rows(reg, "shadowed", since=0))
    if not found:
        return {"requests": 0, "dropped": 0, "agreement": float("nan")}
    return {
        "requests": found[0].requests,
        "dropped": found[0].dropped,
        "agreement": found[0].agreement or 0.0,
    }


def measure(
    args: argparse.Namespace, tmp: Path
) -> tuple[dict[float, dict[str, Run]], dict[str, float]]:
    registry = tmp / "reg"
    body = setup(registry)
    env = {"MODELYARD_STATS_INTERVAL_S": "2", "MODELYARD_LOG_LEVEL": "warning"}
    server = serve(registry, tmp / "server.log", "logreg@production,logreg@shadow", env)
    results: dict[float, dict[str, Run]] = {}
    try:
        for rate in args.rates:
            for ep in ENDPOINTS:  # warm-up, discarded
                open_loop(server.url, ep, body, rate, args.warmup)
            pooled = interleaved(
                server, ENDPOINTS, body, rate, slices=args.slices, slice_s=args.slice_s
            )
            for ep, run in pooled.items():
                print(
                    f"rate {rate:g}/s {ep:9s}: p50 {ms(run.q(50))} ms p99 {ms(run.q(99))} ms "
                    f"median slice p99 {ms(run.typical_p99())} ms errors {run.errors} "
                    f"server cpu {run.server_cpu:.0%}",
                    flush=True,
                )
            results[rate] = pooled
    finally:
        server.stop()  # writes the last serving stats
    return results, shadow_counts(registry)


def table(results: dict[float, dict[str, Run]]) -> tuple[str, list[float]]:
    lines = [
        "| rate (req/s) | endpoint | requests | errors | server CPU | p50 ms | p99 ms | p99.9 ms "
        "| median slice p99 ms | vs plain |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for rate, pooled in results.items():
        base = pooled["plain"].typical_p99()
        ratios.append(pooled["shadowed"].typical_p99() / base)
        for ep, run in pooled.items():
            cells = [
                f"{rate:g}",
                ep,
                f"{len(run.latencies_s):,}",
                str(run.errors),
                f"{run.server_cpu:.0%}",
                ms(run.q(50)),
                ms(run.q(99)),
                ms(run.q(99.9)),
                ms(run.typical_p99()),
                f"{run.typical_p99() / base:.2f}x",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[300.0, 600.0, 1200.0],
        help="request rates, comma-separated",
    )
    parser.add_argument("--slices", type=int, default=30, help="slices per endpoint and rate")
    parser.add_argument("--slice-s", type=float, default=1.0, help="seconds per slice")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded warm-up")
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--no-pin", action="store_true", help="let the OS place both processes")
    args = parser.parse_args()
    common.PIN = not args.no_pin
    pin_client()
    before = machine_line()
    with tempfile.TemporaryDirectory(prefix="modelyard-shadow-bench-") as tmp:
        results, shadows = measure(args, Path(tmp))
    text, ratios = table(results)
    met = [f"{rate:g}/s" for rate, r in zip(results, ratios, strict=True) if r <= 1.10]
    command = "python bench/traffic/shadow.py"
    if sys.argv[1:]:
        command += " " + " ".join(sys.argv[1:])
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    section = f"""### {stamp} UTC — shadow cost: `{command}`

- Machine: {before} at start; load average {machine_line().rsplit("load average ", 1)[1]} at end.
- Placement: {placement()}.
- Model: the peer comparison's logreg ONNX (`bench/models.py`), one row per request.
  Endpoint `plain`: one route; `shadowed`: the same route plus a shadow of a second version of
  the model on **every** request (`fraction: 1.0`, argmax comparison), default
  `shadow_max_concurrency` (8). Per rate, {args.slices} x {args.slice_s:g} s slices per
  endpoint, alternating ABBA, latencies pooled; latency from each request's scheduled send
  time (no coordinated omission).
- Shadows run: {shadows["requests"]:,}, dropped (box busy): {shadows["dropped"]:,}, agreement
  {shadows["agreement"]:.1%} (the same model twice: 100 % expected).
- Goal, primary p99 with the shadow on within 10 % of p99 with it off: met at
  {", ".join(met) or "no rate"} (ratios of the median slice p99:
  {", ".join(f"{r:.2f}x" for r in ratios)}). The median over the slices of each slice's p99
  is the compared number because other work on this shared machine stalls the server
  now and then for hundreds of ms, which swamps the pooled p99 of whichever endpoint it hits;
  the pooled p99 and p99.9 are shown too.

{text}
"""
    print("\n" + section)
    if not args.no_record:
        record(section)
        print(f"recorded in {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
