"""Profiling a version in-process with a fake clock: the numbers are computed, never measured."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.cli_predict import load_runtime
from modelyard.core.clock import FakeClock
from modelyard.errors import InvalidInputError
from modelyard.optimize.profiling import ProfilePlan, ProfileReport, profile_version
from modelyard.optimize.timing import LoopLimits
from modelyard.registry import Registry
from modelyard.registry.records import ModelVersion
from modelyard.runtime import Runtime, RuntimeOptions
from modelyard.settings import Settings
from modelyard.types import Array
from tests.unit.optimize.models import FEATURES, matmul_classifier
from tests.unit.runtimes.models import iris_like

MS = 1e-3


class ClockedRuntime(Runtime):
    """A real runtime whose every predict "takes" the next of 1, 2, 3, 4 ms per row on a fake
    clock (the real work still runs, so outputs and ORT are exercised)."""

    kind = "clocked"

    def __init__(self, inner: Runtime, clock: FakeClock) -> None:
        super().__init__(inner.path, inner.manifest, inner.options)
        self.inner = inner
        self.clock = clock
        self.steps = itertools.cycle([1.0, 2.0, 3.0, 4.0])
        self.unloaded = False

    def load(self) -> None:
        self.inner.load()

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        out = self.inner.predict(inputs)
        rows = len(next(iter(inputs.values())))
        self.clock.advance(next(self.steps) * rows * MS)
        return out

    def memory_bytes(self) -> int:
        return 12345

    def unload(self) -> None:
        self.unloaded = True
        self.inner.unload()


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / "reg") as registry:
        yield registry


def _profile(
    reg: Registry, version: ModelVersion, plan: ProfilePlan
) -> tuple[ProfileReport, list[ClockedRuntime]]:
    clock = FakeClock(start=0.0)
    made: list[ClockedRuntime] = []

    def load(v: ModelVersion) -> Runtime:
        runtime = ClockedRuntime(load_runtime(reg, v, Settings()), clock)
        made.append(runtime)
        return runtime

    progress: list[tuple[str, float]] = []
    report = profile_version(
        version,
        load,
        RuntimeOptions(),
        plan,
        timer=clock.monotonic,
        progress=lambda label, fraction: progress.append((label, fraction)),
    )
    phases = [f"batch {size}" for size in plan.batch_sizes]
    if version.manifest.runtime == "onnx":
        phases.append(f"ORT profiler, batch {max(plan.batch_sizes)}")
    assert [label for label, fraction in progress if fraction == 0.0] == phases
    assert [label for label, fraction in progress if fraction == 1.0] == phases
    return report, made


def test_onnx_version_percentiles_and_operator_breakdown(reg: Registry, tmp_path: Path) -> None:
    rows = np.random.default_rng(0).standard_normal((2, FEATURES)).astype(np.float32)
    version = reg.push(matmul_classifier(tmp_path / "mlp.onnx"), name="mlp", warmup={"input": rows})
    plan = ProfilePlan(
        batch_sizes=(1, 4),
        limits=LoopLimits(seconds=0.0, warmup=3, min_iterations=8),
        op_runs=4,
        top=2,
    )
    report, made = _profile(reg, version, plan)
    assert made[0].unloaded  # the serving-style runtime is let go before ORT's profiler runs
    doc = report.as_dict()
    assert doc["model"] == "mlp:1"
    assert doc["runtime"] == "onnx"
    assert doc["memory_bytes"] == 12345
    assert doc["sample"] == "warm-up example, 2 rows"
    assert doc["load_s"] == 0.0  # loading does not move the fake clock
    assert doc["warmup_s"] == pytest.approx(2 * MS)  # one warm-up call on 2 rows, step 1 ms
    # 8 timed calls see each of 1..4 ms (per row) twice, whatever the warm-up consumed.
    one, four = doc["batches"]
    assert one["iterations"] == four["iterations"] == 8
    assert one["p50_s"] == pytest.approx(2.5 * MS)
    assert one["p99_s"] == pytest.approx(4.0 * MS)
    assert one["mean_s"] == pytest.approx(2.5 * MS)
    assert one["rows_per_s"] == pytest.approx(400.0)
    assert four["p50_s"] == pytest.approx(10 * MS)
    assert four["rows_per_s"] == pytest.approx(400.0)  # latency grows with rows here
    ops = doc["ops"]
    assert ops["runs"] == 4 and ops["batch_size"] == 4
    assert len(ops["ops"]) == 2
    assert ops["other_types"] >= 1
    assert doc["notes"] == []


def test_non_onnx_versions_get_no_operator_breakdown(reg: Registry) -> None:
    x, y = iris_like()
    version = reg.push(LogisticRegression(max_iter=500).fit(x, y), name="lr")
    plan = ProfilePlan(
        batch_sizes=(2,), limits=LoopLimits(seconds=0, warmup=0, min_iterations=4), rows=5
    )
    report, made = _profile(reg, version, plan)
    doc = report.as_dict()
    assert doc["sample"] == "random rows (seed 0), 5 rows"
    assert doc["ops"] is None
    assert doc["notes"] == ["no operator breakdown: sklearn is not an ONNX runtime"]
    assert [b["iterations"] for b in doc["batches"]] == [4]
    assert made[0].unloaded


class FailsOnEight(ClockedRuntime):
    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        if len(next(iter(inputs.values()))) == 8:
            raise RuntimeError("boom")
        return super().predict(inputs)


def test_an_error_while_timing_still_unloads_the_runtime(reg: Registry, tmp_path: Path) -> None:
    version = reg.push(matmul_classifier(tmp_path / "mlp.onnx"), name="mlp")
    clock = FakeClock()
    made: list[ClockedRuntime] = []

    def load(v: ModelVersion) -> Runtime:
        made.append(FailsOnEight(load_runtime(reg, v, Settings()), clock))
        return made[-1]

    plan = ProfilePlan(batch_sizes=(1, 8), limits=LoopLimits(seconds=0, warmup=0))
    with pytest.raises(RuntimeError, match="boom"):
        profile_version(version, load, RuntimeOptions(), plan, timer=clock.monotonic)
    assert made[0].unloaded


def test_a_missing_warmup_example_is_refused_before_loading(reg: Registry, tmp_path: Path) -> None:
    version = reg.push(matmul_classifier(tmp_path / "mlp.onnx"), name="mlp")
    loads: list[ModelVersion] = []

    def load(v: ModelVersion) -> Runtime:
        loads.append(v)
        raise AssertionError("must not load")

    plan = ProfilePlan(sample_mode="warmup")
    with pytest.raises(InvalidInputError, match="no warm-up example"):
        profile_version(version, load, RuntimeOptions(), plan, timer=FakeClock().monotonic)
    assert loads == []
