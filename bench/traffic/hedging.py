"""Hedging benchmark: a model with 1 % random 200 ms stalls, with and without request hedging.

    .venv/bin/python bench/traffic/hedging.py                 # 30 x 1 s slices each, records
    .venv/bin/python bench/traffic/hedging.py --slices 4 --no-record      # smoke run

One server serves one version of ``bench/traffic/stallmodel.py`` (1 ms per call; 1 % of calls,
at random, 200 ms instead) through two endpoints: ``direct`` (one route) and ``hedged`` (the
same route with ``hedging: {delay_ms: D, max_fraction: 0.05}``: when the first copy has not
answered after D ms a second copy goes to another inference thread, the first answer wins, the
other is cancelled). An open-loop generator sends a fixed rate, alternating short slices
between the endpoints (ABBA), latency measured from each request's scheduled send time.
Server on core 0 and generator on core 1 unless ``--no-pin``. Extra load = model calls (from
the registry's serving stats, cancelled copies included) per client request, minus one. Goal:
p99 cut >= 5x, extra load <= 5 %. With exactly 1 % of calls stalled the unhedged p99 sits on
the edge of the stalls (it is a stall only when a run happens to draw more than 1 %), so
p99.9 and the share of requests over half the stall time are reported too.
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

ENDPOINTS = ("direct", "hedged")


def setup(registry_dir: Path, args: argparse.Namespace) -> bytes:
    from bench.traffic.stallmodel import StallModel
    from modelyard.registry.endpoints import EndpointStore
    from modelyard.registry.registry import Registry

    model = StallModel(
        base_s=args.base_ms / 1e3, stall_s=args.stall_ms / 1e3, stall_rate=args.stall_rate
    )
    with Registry(registry_dir) as reg:
        reg.push(model, name="stall", alias="production")
        store = EndpointStore(reg)
        route = {"name": "main", "model": "stall", "weight": 100}
        store.apply({"name": "direct", "routes": [route]})
        hedging = {"delay_ms": args.delay_ms, "max_fraction": 0.05}
        store.apply({"name": "hedged", "routes": [route], "hedging": hedging})
    return b'{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1.5]}]}'


def model_calls(registry_dir: Path, endpoint: str) -> int:
    """Every call the endpoint made to the model: answered, failed or cancelled."""
    from modelyard.registry.registry import Registry
    from modelyard.traffic.stats_store import read_rows

    with Registry(registry_dir) as reg:
        rows = read_rows(reg, endpoint, since=0)
    return sum(r.stats.requests + r.stats.cancelled for r in rows if r.route == "main")


def hedge_counts(url: str) -> dict[str, int]:
    """``modelyard_hedges_total`` of the ``hedged`` endpoint by outcome (sent, over_budget),
    read from the server's /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        sample.labels["outcome"]: int(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelyard_hedges_total" and sample.labels.get("endpoint") == "hedged"
    }


def measure(
    args: argparse.Namespace, tmp: Path
) -> tuple[dict[str, Run], dict[str, float], dict[str, int]]:
    registry = tmp / "reg"
    body = setup(registry, args)
    env = {
        "MODELYARD_STATS_INTERVAL_S": "2",
        "MODELYARD_LOG_LEVEL": "warning",
        "MODELYARD_INFERENCE_THREADS": "16",  # stalled calls must not hold every thread
    }
    server = serve(registry, tmp / "server.log", "stall", env)
    sent = dict.fromkeys(ENDPOINTS, 0)
    try:
        for ep in ENDPOINTS:  # warm-up (counted for the extra load, not for latency)
            sent[ep] += open_loop(server.url, ep, body, args.rate, args.warmup).sent
        pooled = interleaved(
            server, ENDPOINTS, body, args.rate, slices=args.slices, slice_s=args.slice_s
        )
        hedges = hedge_counts(server.url)
    finally:
        server.stop()  # writes the last serving stats
    for ep, run in pooled.items():
        sent[ep] += run.sent
        print(
            f"{ep:7s}: p50 {ms(run.q(50))} ms p99 {ms(run.q(99))} ms "
            f"p99.9 {ms(run.q(99.9))} ms errors {run.errors}",
            flush=True,
        )
    extra = {ep: model_calls(registry, ep) / sent[ep] - 1 for ep in ENDPOINTS}
    print(f"hedges (warm-up included): {hedges}", flush=True)
    return pooled, extra, hedges


def slow_share(run: Run, threshold_s: float) -> float:
    return sum(x > threshold_s for x in run.latencies_s) / max(len(run.latencies_s), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--slices", type=int, default=30, help="slices per endpoint")
    parser.add_argument("--slice-s", type=float, default=1.0, help="seconds per slice")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of discarded warm-up")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="hedge delay")
    parser.add_argument("--base-ms", type=float, default=1.0, help="model time per call")
    parser.add_argument("--stall-ms", type=float, default=200.0, help="model time when stalled")
    parser.add_argument(
        "--stall-rates",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[0.01, 0.015, 0.02],
        help="shares of calls stalled, comma-separated (one server each)",
    )
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--no-pin", action="store_true", help="let the OS place both processes")
    args = parser.parse_args()
    common.PIN = not args.no_pin
    pin_client()
    before = machine_line()
    slow = args.stall_ms / 2e3
    lines = [
        "| stall rate | endpoint | requests | errors | p50 ms | p99 ms | p99.9 ms "
        f"| over {slow * 1e3:g} ms | extra model calls |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for stall_rate in args.stall_rates:
        args.stall_rate = stall_rate
        with tempfile.TemporaryDirectory(prefix="modelyard-hedging-bench-") as tmp:
            runs, extra, hedges = measure(args, Path(tmp))
        cut = runs["direct"].q(99) / runs["hedged"].q(99)
        cut_999 = runs["direct"].q(99.9) / runs["hedged"].q(99.9)
        ok = cut >= 5 and extra["hedged"] <= 0.05
        verdicts.append(
            f"  - {stall_rate:.1%} of calls stalled: **{'met' if ok else 'NOT met'}** (p99 cut "
            f"{cut:.1f}x, p99.9 cut {cut_999:.1f}x, extra model calls {extra['hedged']:+.2%}; "
            f"requests over {slow * 1e3:g} ms without hedging: "
            f"{slow_share(runs['direct'], slow):.2%}; hedges sent {hedges.get('sent', 0):,}, "
            f"refused by the cap {hedges.get('over_budget', 0):,}, warm-up included)"
        )
        for ep, run in runs.items():
            cells = [
                f"{stall_rate:.1%}",
                ep,
                f"{len(run.latencies_s):,}",
                str(run.errors),
                ms(run.q(50)),
                ms(run.q(99)),
                ms(run.q(99.9)),
                f"{slow_share(run, slow):.2%}",
                f"{extra[ep]:+.2%}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    command = "python bench/traffic/hedging.py"
    if sys.argv[1:]:
        command += " " + " ".join(sys.argv[1:])
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    section = f"""### {stamp} UTC — hedging: `{command}`

- Machine: {before} at start; load average {machine_line().rsplit("load average ", 1)[1]} at end.
- Placement: {placement()}; 16 inference threads; {args.rate:g} requests/s.
- Model `bench/traffic/stallmodel.py`: {args.base_ms:g} ms per call; each call, at random,
  {args.stall_ms:g} ms instead with the stall rate of the row. `direct`: one route; `hedged`:
  the same route with `hedging: {{delay_ms: {args.delay_ms:g}, max_fraction: 0.05}}`.
  {args.slices} x {args.slice_s:g} s slices per endpoint, alternating ABBA, latencies pooled;
  latency from each request's scheduled send time. One server per stall rate.
- Goal: p99 cut >= 5x with <= 5 % extra requests:
{chr(10).join(verdicts)}

{chr(10).join(lines)}
"""
    print("\n" + section)
    if not args.no_record:
        record(section)
        print(f"recorded in {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
