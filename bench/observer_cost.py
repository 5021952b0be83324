"""In-process cost of the per-request observer fan-out (``Observers.on_infer`` + ``on_batch``).

Builds the observer set of ``modelyard serve`` with default settings the way the server does
(``configure_logging`` first, then :func:`modelyard.app.build_app` with every feature) on a
temporary registry holding the demo's ``simple`` ONNX model, with access lines going to
/dev/null. Then it feeds the fan-out the events one small JSON request (1 row) produces, built
as ``core/serving.py`` builds them: one ``InferEvent`` and one ``BatchEvent`` (an inline,
unbatched predict). Prints microseconds (CPU time of the calling thread) per request: the
whole fan-out, and each observer's ``on_infer`` and ``on_batch`` called alone. Nothing is
served and no thread is kept busy.

    .venv/bin/python bench/observer_cost.py              # 20 000 requests x 7 rounds
    .venv/bin/python bench/observer_cost.py -n 5000 -r 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from modelyard.app import build_app  # noqa: E402
from modelyard.core.observer import BatchEvent, InferEvent, Observer, Observers  # noqa: E402
from modelyard.demo import simple_model_bytes  # noqa: E402
from modelyard.monitoring.logs import configure_logging, flush_logs  # noqa: E402
from modelyard.registry.registry import Registry  # noqa: E402
from modelyard.settings import Settings  # noqa: E402
from modelyard.types import InferRequest, InferResponse, RequestContext  # noqa: E402

MODEL = "simple"
VERSION = "1"  # the first version pushed to the fresh registry
#: Distinct events cycled through (request ids and latencies vary like real traffic).
EVENTS = 64


def make_events(version: str) -> tuple[list[InferEvent], list[BatchEvent]]:
    """What one 1-row request of ``simple`` reports, as core/serving.py builds it."""
    rng = np.random.default_rng(0)
    infers: list[InferEvent] = []
    batches: list[BatchEvent] = []
    for _ in range(EVENTS):
        a = rng.integers(0, 100, size=(1, 16), dtype=np.int32)
        b = rng.integers(0, 100, size=(1, 16), dtype=np.int32)
        request = InferRequest(inputs={"INPUT0": a, "INPUT1": b})
        response = InferResponse(
            model_name=MODEL,
            model_version=version,
            outputs={"OUTPUT0": a + b, "OUTPUT1": a - b},
            id=None,
        )
        ctx = RequestContext()
        latency = float(rng.uniform(0.0002, 0.002))
        infers.append(
            InferEvent(
                endpoint=ctx.endpoint or MODEL,
                model=MODEL,
                version=version,
                route=ctx.route or "",
                code="OK",
                latency_s=latency,
                request=request,
                response=response,
                ctx=ctx,
            )
        )
        infer_s = latency * 0.3
        waited = float(rng.uniform(0.0, 0.00002))
        batches.append(BatchEvent(MODEL, version, 1, 1, waited, infer_s, waited, failed=False))
    return infers, batches


def per_call_us(call: Callable[[int], None], n: int, rounds: int) -> tuple[float, float]:
    """(median, min) microseconds per ``call(i)`` over ``rounds`` rounds of ``n`` calls, in
    this thread's CPU time: on a shared machine, time spent waiting for a core is left out."""
    samples = []
    for _ in range(rounds):
        started = time.thread_time_ns()
        call(n)
        samples.append((time.thread_time_ns() - started) / n / 1000)
    return statistics.median(samples), min(samples)


Call = Callable[[int], None]


def loop(hooks: Sequence[Callable[[Any], None]], events: Sequence[Sequence[Any]]) -> Call:
    """``call(n)``: n requests, each ``hook(event)`` for every hook and its list of events."""
    pairs = list(zip(hooks, events, strict=True))

    def call(n: int) -> None:
        for i in range(n):
            j = i % EVENTS
            for hook, evs in pairs:
                hook(evs[j])

    return call


def measure(observers: Observers, n: int, rounds: int) -> list[tuple[str, float, float]]:
    """(label, median, min) per row: the fan-out, its two hooks, each observer's hooks alone."""
    infers, batches = make_events(VERSION)
    fan_out = loop([observers.on_infer, observers.on_batch], [infers, batches])
    fan_out(EVENTS * 4)  # warm up: series, label children and look-ups are made once
    empty, _ = per_call_us(loop([], []), n, rounds)
    jobs: list[tuple[str, Call]] = [
        ("Observers.on_infer + on_batch", fan_out),
        ("  Observers.on_infer", loop([observers.on_infer], [infers])),
        ("  Observers.on_batch", loop([observers.on_batch], [batches])),
    ]
    for o in observers.observers:
        name = type(o).__name__
        if _overrides(o, "on_infer"):
            jobs.append((f"    {name}.on_infer", loop([o.on_infer], [infers])))
        if _overrides(o, "on_batch"):
            jobs.append((f"    {name}.on_batch", loop([o.on_batch], [batches])))
    rows = []
    for label, call in jobs:
        median, low = per_call_us(call, n, rounds)
        rows.append((label, median - empty, low - empty))
    return rows


def _overrides(observer: Observer, hook: str) -> bool:
    return getattr(type(observer), hook) is not getattr(Observer, hook)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="requests per round")
    parser.add_argument("-r", "--rounds", type=int, default=7, help="rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelyard-observer-bench-") as tmp:
        settings = Settings(registry=str(Path(tmp) / "registry"))
        # As run_server does, before build_app; the handler keeps writing here until exit.
        configure_logging(settings, stream=open(os.devnull, "w"))
        model_file = Path(tmp) / "simple.onnx"
        model_file.write_bytes(simple_model_bytes())
        pushed = Registry.from_settings(settings).push(model_file, name=MODEL)
        assert str(pushed.version) == VERSION
        app = build_app(settings)
        try:
            rows = measure(app.observers, args.n, args.rounds)
        finally:
            flush_logs()
            app.close()
    print(f"{args.n} requests x {args.rounds} rounds; µs per request (thread CPU time, the")
    print("bench loop's own cost subtracted)")
    print(f"{'':40s} {'median':>8s} {'min':>8s}")
    for label, median, low in rows:
        print(f"{label:40s} {median:8.3f} {low:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
