"""Where an ONNX model spends its time, per operator type, from ONNX Runtime's own profiler.

The profiler runs in a session of its own (``SessionOptions.enable_profiling``), never in the
runtime that serves or is being timed, so profiling does not slow those down or leave trace files
behind them. ORT writes a Chrome-trace JSON list; kernel events are ``{"cat": "Node", "name":
"<node>_kernel_time", "dur": µs, "args": {"op_name": ...}}`` and each run is a ``model_run``
event. :func:`aggregate_ops` is the pure part.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import FailedPreconditionError
from modelyard.optimize.onnx_run import feed_of, open_session
from modelyard.runtime import RuntimeOptions
from modelyard.types import Array


@dataclass(frozen=True)
class OpTime:
    """Total kernel time of one operator type over the profiled runs."""

    op_type: str
    calls: int
    total_us: float
    share: float  # of all kernel time, 0..1

    def as_dict(self) -> dict[str, Any]:
        return {
            "op_type": self.op_type,
            "calls": self.calls,
            "total_us": self.total_us,
            "share": self.share,
        }


@dataclass(frozen=True)
class OpBreakdown:
    """Operator types by total kernel time (largest first, ``top`` of them) over ``runs`` runs."""

    runs: int
    batch_size: int
    total_us: float
    ops: tuple[OpTime, ...]
    other_types: int  # op types left out of ``ops`` by ``top``

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "batch_size": self.batch_size,
            "total_us": self.total_us,
            "ops": [op.as_dict() for op in self.ops],
            "other_types": self.other_types,
        }


def _is_kernel(event: Mapping[str, Any]) -> bool:
    return event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time")


def aggregate_ops(
    events: Sequence[Mapping[str, Any]], *, skip_runs: int = 0, top: int = 10, batch_size: int = 0
) -> OpBreakdown:
    """Kernel time per operator type, leaving out the kernels of the first ``skip_runs`` runs
    (warm-up: allocations, first-touch)."""
    runs = sorted(
        (float(e.get("ts", 0)), float(e.get("dur", 0)))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    cutoff = runs[skip_runs - 1][0] + runs[skip_runs - 1][1] if 0 < skip_runs <= len(runs) else None
    totals: dict[str, float] = {}
    calls: dict[str, int] = {}
    for event in events:
        if not _is_kernel(event):
            continue
        if cutoff is not None and float(event.get("ts", 0)) < cutoff:
            continue
        args = event.get("args") or {}
        op = str(args.get("op_name") or "?")
        totals[op] = totals.get(op, 0.0) + float(event.get("dur", 0))
        calls[op] = calls.get(op, 0) + 1
    grand = sum(totals.values())
    ranked = sorted(totals, key=lambda op: (-totals[op], op))
    ops = tuple(
        OpTime(op, calls[op], totals[op], totals[op] / grand if grand > 0 else 0.0)
        for op in ranked[: max(top, 0)]
    )
    counted = max(len(runs) - max(skip_runs, 0), 0)
    return OpBreakdown(
        runs=counted,
        batch_size=batch_size,
        total_us=grand,
        ops=ops,
        other_types=max(len(ranked) - len(ops), 0),
    )


def read_profile(path: Path) -> list[dict[str, Any]]:
    """The events of an ORT profile file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FailedPreconditionError(f"cannot read the ORT profile {path}: {exc}") from exc
    if isinstance(data, dict):  # some builds wrap the list
        data = data.get("traceEvents", [])
    if not isinstance(data, list):
        raise FailedPreconditionError(f"ORT profile {path} is not a list of events")
    return [e for e in data if isinstance(e, dict)]


def profile_ops(
    model_file: Path,
    inputs: Mapping[str, Array],
    options: RuntimeOptions,
    *,
    runs: int = 20,
    warmup_runs: int = 2,
    top: int = 10,
    batch_size: int = 0,
    progress: Callable[[float], None] | None = None,
) -> OpBreakdown:
    """Run a profiling session over ``model_file`` ``warmup_runs + runs`` times on ``inputs``
    and aggregate its kernel times (warm-up runs left out); ``progress`` gets the fraction done
    after each run."""
    with tempfile.TemporaryDirectory(prefix="modelyard-ortprof-") as tmp:
        session = open_session(model_file, options, profile_prefix=Path(tmp) / "ort")
        feed = feed_of(session, inputs)
        total = warmup_runs + runs
        for done in range(1, total + 1):
            session.run(None, feed)
            if progress is not None:
                progress(done / total)
        events = read_profile(Path(session.end_profiling()))
    return aggregate_ops(events, skip_runs=warmup_runs, top=top, batch_size=batch_size)
