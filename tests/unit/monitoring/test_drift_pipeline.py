"""Drift end to end, in-process: a real ONNX model served by the dataplane, the sketch aggregator
writing to a real (SQLite) registry, and the controller computing reports, all on a FakeClock.

The model is ``linear``: input FP32 [-1, 20] -> output FP32 [-1, 1] = the sum of the features.
Its reference comes from 20,000 standard-normal training rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.app import make_loader
from modelyard.control.lease import try_acquire
from modelyard.core.clock import FakeClock
from modelyard.core.model_cache import ModelCache
from modelyard.core.observer import Observers
from modelyard.core.serving import ServingDataPlane
from modelyard.monitoring import drift
from modelyard.monitoring.drift_reports import drift_events, latest_report, load_sketches
from modelyard.monitoring.drift_wiring import DriftController
from modelyard.monitoring.sketches import DriftAggregator
from modelyard.registry.registry import Registry
from modelyard.runtime import RuntimeOptions
from modelyard.types import InferRequest, RequestContext
from tests.testmodels import linear_fp32_model

INTERVAL = 10.0
FEATURES = 20
ROWS_PER_REQUEST = 20


class Rig:
    """Registry + dataplane + aggregator + controller sharing one FakeClock."""

    def __init__(self, tmp_path: Path, window_s: float = INTERVAL) -> None:
        self.clock = FakeClock(start=1000.0, wall_start=1_700_000_000.0)  # wall on a boundary
        self.registry = Registry(tmp_path / "reg", clock=self.clock)
        rng = np.random.default_rng(7)
        train = rng.normal(size=(20_000, FEATURES)).astype(np.float32)
        reference = drift.reference_stats(
            {"input": train}, {"output": train.sum(axis=1, keepdims=True)}
        )
        self.registry.push(
            linear_fp32_model(tmp_path / "linear.onnx"),
            name="linear",
            metadata={drift.REFERENCE_KEY: reference},
        )
        self.registry.push(linear_fp32_model(tmp_path / "plain.onnx"), name="plain")
        self.aggregator = DriftAggregator(
            self.registry, "replica-a", interval_s=INTERVAL, clock=self.clock
        )
        self.cache = ModelCache(
            make_loader(self.registry, RuntimeOptions()), budget_bytes=1 << 30, clock=self.clock
        )
        self.dataplane = ServingDataPlane(
            self.registry,
            self.cache,
            resolve_ttl_s=60.0,
            clock=self.clock,
            observer=Observers([self.aggregator]),
        )
        self.controller = DriftController(
            self.registry,
            holder="replica-a",
            interval_s=INTERVAL,
            window_s=window_s,
            clock=self.clock,
        )

    def serve(self, rows: np.ndarray, model: str = "linear") -> None:
        """Send ``rows`` as requests of ROWS_PER_REQUEST rows, concurrently."""

        async def go() -> None:
            await asyncio.gather(
                *(
                    self.dataplane.infer(
                        model,
                        None,
                        InferRequest(inputs={"input": rows[i : i + ROWS_PER_REQUEST]}),
                        RequestContext(),
                    )
                    for i in range(0, len(rows), ROWS_PER_REQUEST)
                )
            )

        asyncio.run(go())

    def end_interval(self) -> list[dict[str, Any]] | None:
        """Move to the next interval, write the sketches, and run one controller pass."""
        self.clock.advance(INTERVAL)
        self.aggregator.drain()
        self.aggregator.flush()
        return self.controller.run_once()

    def close(self) -> None:
        self.aggregator.close()
        self.cache.close()
        self.dataplane.close()
        self.registry.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def normal_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=(n, FEATURES)).astype(np.float32)


def test_a_shift_in_one_feature_is_flagged_for_that_feature_only(rig: Rig) -> None:
    rng = np.random.default_rng(11)
    rows = normal_rows(rng, 2000)
    rows[:, 7] += 1.0
    rig.serve(rows)
    reports = rig.end_interval()
    assert reports is not None and len(reports) == 1
    report = reports[0]
    assert (report["model"], report["version"], report["rows"]) == ("linear", 1, 2000)
    assert report["status"] == "alarm"
    input_alarms = [a for a in report["alarms"] if a.startswith("inputs:")]
    assert input_alarms == ["inputs:input[7]"]
    others = [row for row in report["inputs"] if row["feature"] != "input[7]"]
    assert len(others) == FEATURES - 1 and all(row["status"] == "ok" for row in others)
    assert latest_report(rig.registry, "linear") == report
    events = drift_events(rig.registry, "linear")
    assert len(events) == 1
    assert "input[7]" in events[0]["message"] and events[0]["data"]["status"] == "alarm"


def test_prediction_drift_is_flagged_on_the_output(rig: Rig) -> None:
    rng = np.random.default_rng(12)
    rig.serve(normal_rows(rng, 1000) + np.float32(0.5))  # every feature a little
    reports = rig.end_interval()
    assert reports is not None
    assert "outputs:output[0]" in reports[0]["alarms"]
    out = reports[0]["outputs"][0]
    assert out["feature"] == "output[0]" and out["psi"] > 1.0


def test_no_shift_over_50_intervals_raises_no_alarm(rig: Rig) -> None:
    rng = np.random.default_rng(13)
    statuses = []
    worst_psi = 0.0
    for _ in range(50):
        rig.serve(normal_rows(rng, 500))
        reports = rig.end_interval()
        assert reports is not None and len(reports) == 1
        report = reports[0]
        assert report["rows"] == 500  # one interval per report: the window is one interval
        statuses.append(report["status"])
        worst_psi = max(worst_psi, *(row["psi"] for row in report["inputs"] + report["outputs"]))
    assert "alarm" not in statuses and statuses.count("ok") >= 45
    assert worst_psi < 0.1
    assert drift_events(rig.registry) == []


def test_events_only_on_entering_and_leaving_alarm(rig: Rig) -> None:
    rng = np.random.default_rng(14)
    for shifted in (True, True, False, False):
        rows = normal_rows(rng, 1000)
        if shifted:
            rows[:, 2] -= 2.0
        rig.serve(rows)
        rig.end_interval()
    messages = [e["message"] for e in drift_events(rig.registry, "linear")]
    assert messages == ["drift alarm on linear:1: inputs:input[2]", "drift cleared on linear:1"]


def test_too_few_rows_are_not_judged(rig: Rig) -> None:
    rows = normal_rows(np.random.default_rng(15), 100) + np.float32(5.0)
    rig.serve(rows)
    reports = rig.end_interval()
    assert reports is not None and reports[0]["status"] == "insufficient_data"
    assert drift_events(rig.registry) == []


def test_versions_without_reference_are_skipped_cheaply(rig: Rig) -> None:
    rows = normal_rows(np.random.default_rng(16), 100)
    rig.serve(rows[:20], model="plain")
    rig.aggregator.drain()  # learns that plain:1 has no reference
    rig.serve(rows, model="plain")
    assert rig.aggregator._queue.qsize() == 0  # nothing queued for it any more
    assert rig.end_interval() == []


def test_only_the_lease_holder_computes(rig: Rig) -> None:
    rig.serve(normal_rows(np.random.default_rng(17), 400))
    assert try_acquire(rig.registry, "controller", "someone-else", ttl_s=30)
    assert rig.end_interval() is None  # the lease is taken: no pass
    assert latest_report(rig.registry, "linear") is None
    rig.clock.advance(31)  # the other holder stopped renewing
    rig.controller.window_s = 60.0
    reports = rig.controller.run_once()
    assert reports is not None and reports[0]["rows"] == 400


def test_sketches_of_one_interval_merge_across_flushes_and_replicas(rig: Rig) -> None:
    rng = np.random.default_rng(18)
    rig.serve(normal_rows(rng, 100))
    rig.aggregator.drain()
    assert rig.aggregator.flush() == 0  # the interval is still open
    assert rig.aggregator.flush(everything=True) == 1  # e.g. at shutdown
    rig.serve(normal_rows(rng, 60))  # same interval, after that flush
    other = DriftAggregator(rig.registry, "replica-b", interval_s=INTERVAL, clock=rig.clock)
    rig.dataplane.observer = Observers([rig.aggregator, other])
    rig.serve(normal_rows(rng, 40))
    other.close()
    reports = rig.end_interval()
    sketches = load_sketches(rig.registry, since=0)[("linear", 1)]
    assert sorted(s["rows"] for s in sketches) == [40, 200]  # replica-a: 100 + 60 + 40
    assert reports is not None and reports[0]["rows"] == 240


def test_full_queue_drops_and_counts(tmp_path: Path) -> None:
    clock = FakeClock()
    reg = Registry(tmp_path / "reg", clock=clock)
    agg = DriftAggregator(reg, "r", queue_size=3, clock=clock, reference_of=lambda m, v: None)
    drops: list[int] = []
    agg.on_drop = drops.append
    from modelyard.core.observer import InferEvent
    from modelyard.types import InferResponse

    x = {"x": np.zeros((1, 2), dtype=np.float32)}
    event = InferEvent(
        endpoint="m",
        model="m",
        version="1",
        route="",
        code="OK",
        latency_s=0.0,
        request=InferRequest(inputs=x),
        response=InferResponse(model_name="m", model_version="1", outputs=x),
        ctx=RequestContext(),
    )
    for _ in range(5):
        agg.on_infer(event)
    assert agg.dropped == 2 and drops == [1, 1]
    assert agg.drain() == 3
    agg.close()
    reg.close()


def test_a_new_reference_takes_effect_after_a_flush(rig: Rig) -> None:
    rng = np.random.default_rng(19)
    rig.serve(normal_rows(rng, 300))
    first = rig.end_interval()
    assert first is not None and first[0]["status"] == "ok"
    shifted_train = normal_rows(rng, 5000) + np.float32(3.0)
    rig.registry.update_metadata(
        "linear", 1, {drift.REFERENCE_KEY: drift.reference_stats({"input": shifted_train})}
    )
    rig.serve(normal_rows(rng, 300))
    reports = rig.end_interval()
    assert reports is not None
    report = reports[0]
    assert report["outputs"] == [] and report["status"] == "alarm"
    assert len(report["alarms"]) == FEATURES


def test_a_reference_added_later_is_picked_up_at_the_next_interval(rig: Rig) -> None:
    rng = np.random.default_rng(20)
    rig.serve(normal_rows(rng, 100), model="plain")
    rig.aggregator.drain()  # plain:1 has no reference (yet)
    train = normal_rows(rng, 5000)
    rig.registry.update_metadata(
        "plain", 1, {drift.REFERENCE_KEY: drift.reference_stats({"input": train})}
    )
    assert rig.end_interval() == []  # nothing sketched in that interval
    rig.serve(normal_rows(rng, 300), model="plain")
    reports = rig.end_interval()
    assert reports is not None and [(r["model"], r["rows"]) for r in reports] == [("plain", 300)]


def test_a_failed_write_is_retried_with_nothing_lost(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.monitoring import sketches

    rng = np.random.default_rng(21)
    rig.serve(normal_rows(rng, 100))
    rig.clock.advance(INTERVAL)
    rig.aggregator.drain()

    def broken(*args: object) -> None:
        raise OSError("database is down")

    monkeypatch.setattr(sketches, "write_sketches", broken)
    assert rig.aggregator.flush() == 0
    monkeypatch.undo()
    assert rig.aggregator.flush() == 1
    assert [s["rows"] for s in load_sketches(rig.registry, since=0)[("linear", 1)]] == [100]


def test_an_interval_ending_just_after_a_pass_is_in_the_next_report(rig: Rig) -> None:
    """A sketch is written when its interval ends: one that ends just after a pass started
    before that pass's window reaches back to, and must still be judged by the next pass."""
    rig.controller.sketch_interval_s = INTERVAL
    rig.clock.advance(INTERVAL - 0.1)  # 0.1 s before the interval ends
    assert rig.controller.run_once() == []  # nothing has ended yet
    rig.serve(normal_rows(np.random.default_rng(19), 400))
    rig.clock.advance(0.2)  # the interval has ended: its sketch is written
    rig.aggregator.drain()
    assert rig.aggregator.flush() == 1
    rig.clock.advance(INTERVAL - 0.2)  # the next pass, one drift interval after the first
    reports = rig.controller.run_once()
    assert reports is not None and [r["rows"] for r in reports] == [400]
    rig.clock.advance(INTERVAL)
    assert rig.controller.run_once() == []  # judged once: not again by the pass after
