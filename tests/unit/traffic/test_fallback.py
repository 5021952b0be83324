"""Fallback selection (pure, table-driven) and the chain through the TrafficDataPlane:
backup model, last good answer, static default; timeout, error and NaN/Inf reasons."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from modelyard.errors import (
    DeadlineExceededError,
    ErrorCode,
    InferenceError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    ModelYardError,
    PayloadTooLargeError,
    UnavailableError,
)
from modelyard.traffic.fallback import failure_reason, has_nonfinite, static_outputs, steps_for
from modelyard.traffic.spec import Fallback, FallbackStep
from modelyard.types import Array, InferRequest
from tests.unit.traffic.fakes import (
    FakeInner,
    RecordingObserver,
    blocking,
    fail,
    infer,
    nan,
    spec,
    traffic,
    x,
)

STATIC_ZERO = {"y": {"datatype": "FP32", "shape": [1, 1], "data": [0.0]}}


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), "timeout"),
        (DeadlineExceededError("late"), "timeout"),
        (InferenceError("boom"), "error"),
        (UnavailableError("busy"), "error"),
        (ModelLoadError("bad file"), "error"),
        (ModelNotFoundError("gone"), "error"),
        (PayloadTooLargeError("shed"), "error"),
        (RuntimeError("bug"), "error"),
        (InvalidInputError("wrong shape"), None),  # the client's mistake: never hidden
    ],
)
def test_failure_reason(exc: BaseException, reason: str | None) -> None:
    assert failure_reason(exc) == reason


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({"y": np.array([1.0, 2.0])}, False),
        ({"y": np.array([1.0, np.nan])}, True),
        ({"y": np.array([np.inf], dtype=np.float16)}, True),
        ({"y": np.array([-np.inf])}, True),
        ({"y": np.array([1, 2], dtype=np.int64)}, False),
        ({"y": np.array([b"nan"], dtype=object)}, False),
        ({"a": np.array([1.0]), "b": np.array([[np.nan]])}, True),
        ({}, False),
    ],
)
def test_has_nonfinite(outputs: dict[str, Array], expected: bool) -> None:
    assert has_nonfinite(outputs) is expected


CHAIN = (FallbackStep(kind="model", model="backup"), FallbackStep(kind="static", outputs={"y": {}}))


@pytest.mark.parametrize(
    ("on", "reason", "expected"),
    [
        ({"error", "timeout", "nonfinite"}, "error", CHAIN),
        ({"error"}, "timeout", ()),
        ({"timeout"}, "timeout", CHAIN),
        ({"nonfinite"}, "nonfinite", CHAIN),
        ({"error"}, None, ()),
    ],
)
def test_steps_for(on: set[str], reason: Any, expected: tuple[FallbackStep, ...]) -> None:
    fallback = Fallback.model_validate({"on": on, "chain": CHAIN})
    assert steps_for(fallback, reason) == expected


def test_steps_for_without_fallback() -> None:
    assert steps_for(None, "error") == ()


def test_static_outputs_builds_read_only_arrays() -> None:
    step = FallbackStep(
        kind="static",
        outputs={
            "y": {"datatype": "FP32", "shape": [2, 1], "data": [[0.5], [1.5]]},
            "label": {"datatype": "BYTES", "shape": [1], "data": ["unknown"]},
        },
    )
    out = static_outputs(step)
    assert out["y"].dtype == np.float32 and out["y"].shape == (2, 1)
    assert out["label"].tolist() == [b"unknown"]
    assert not out["y"].flags.writeable


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"datatype": "FP99", "shape": [1], "data": [0]}, "y.datatype"),
        ({"datatype": "FP32", "shape": [2], "data": [0.0]}, "1 values do not fill shape [2]"),
        ({"datatype": "FP32", "shape": "1", "data": [0.0]}, "y.shape"),
        ({"datatype": "FP32", "shape": [-1], "data": [0.0]}, "y.shape"),
        ({"datatype": "FP32", "shape": [1], "data": 0.0}, "y.data: must be a list"),
        ({"datatype": "INT32", "shape": [1], "data": ["x"]}, "y.data: not INT32"),
        ({"datatype": "FP32", "shape": [1], "data": [0.0], "extra": 1}, "unknown keys"),
    ],
)
def test_static_outputs_names_the_bad_field(doc: dict[str, Any], message: str) -> None:
    step = FallbackStep(kind="static", outputs={"y": doc})
    with pytest.raises(InvalidInputError, match=r"fallback\.chain\.outputs\.y") as info:
        static_outputs(step)
    assert message in info.value.message


# ---- the chain through the dataplane ------------------------------------------------------------
def inner_with(primary: Any = None) -> FakeInner:
    inner = FakeInner()
    inner.add("a", "1", factor=1.0)
    inner.add("backup", "7", factor=100.0)
    if primary is not None:
        inner.behaviours["a"] = primary
    return inner


def chain(*steps: dict[str, Any], on: list[str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"chain": list(steps)}
    if on is not None:
        doc["on"] = on
    return doc


def test_error_falls_back_to_the_backup_model_and_is_flagged() -> None:
    observer = RecordingObserver()
    inner = inner_with(fail)
    dp = traffic(
        inner, spec(fallback=chain({"kind": "model", "model": "backup"})), observer=observer
    )
    response = infer(dp, inputs=x(2.0))
    assert float(response.outputs["y"][0, 0]) == 200.0
    assert response.model_version == "7"
    assert response.parameters == {
        "route": "main",
        "answered_by": "backup:7",
        "fallback": "error",
        "fallback_step": "model",
    }
    assert observer.fallbacks == [("ep", "error")]
    assert [(c.model, c.route) for c in inner.calls] == [("a", "main"), ("backup", "fallback")]


def test_nonfinite_outputs_fall_back_to_a_static_default() -> None:
    dp = traffic(inner_with(nan), spec(fallback=chain({"kind": "static", "outputs": STATIC_ZERO})))
    response = infer(dp)
    assert response.outputs["y"].tolist() == [[0.0]]
    assert response.model_version == ""
    assert response.parameters["answered_by"] == "static"
    assert response.parameters["fallback"] == "nonfinite"


def test_nonfinite_outputs_without_a_fallback_are_returned_unchanged() -> None:
    dp = traffic(inner_with(nan), spec())
    assert np.isnan(infer(dp).outputs["y"]).all()


def test_reasons_not_listed_in_on_are_not_handled() -> None:
    dp = traffic(
        inner_with(fail),
        spec(fallback=chain({"kind": "static", "outputs": STATIC_ZERO}, on=["timeout"])),
    )
    with pytest.raises(InferenceError, match="boom"):
        infer(dp)


def test_client_errors_never_fall_back() -> None:
    async def bad(request: InferRequest) -> dict[str, Array]:
        raise InvalidInputError("input 'x': wrong shape")

    dp = traffic(inner_with(bad), spec(fallback=chain({"kind": "static", "outputs": STATIC_ZERO})))
    with pytest.raises(InvalidInputError, match="wrong shape"):
        infer(dp)


def test_the_chain_goes_on_past_failing_steps() -> None:
    inner = inner_with(fail)
    inner.behaviours["backup"] = nan  # the backup answers, but with NaN: not an answer
    dp = traffic(
        inner,
        spec(
            fallback=chain(
                {"kind": "model", "model": "missing-model"},
                {"kind": "model", "model": "backup"},
                {"kind": "last_good"},  # nothing cached yet
                {"kind": "static", "outputs": STATIC_ZERO},
            )
        ),
    )
    response = infer(dp)
    assert response.parameters["fallback_step"] == "static"


def test_when_every_step_fails_the_client_gets_the_primary_error() -> None:
    inner = inner_with(fail)
    inner.behaviours["backup"] = fail
    dp = traffic(inner, spec(fallback=chain({"kind": "model", "model": "backup"})))
    with pytest.raises(InferenceError, match="boom"):
        infer(dp)


def test_nonfinite_with_every_step_failing_is_an_error() -> None:
    inner = inner_with(nan)
    inner.behaviours["backup"] = fail
    dp = traffic(inner, spec(fallback=chain({"kind": "model", "model": "backup"})))
    with pytest.raises(InferenceError, match="NaN/Inf and no fallback answered"):
        infer(dp)


def test_last_good_answer_for_the_same_input() -> None:
    inner = inner_with()
    dp = traffic(inner, spec(fallback=chain({"kind": "last_good"})))
    good = infer(dp, inputs=x(3.0))
    assert "fallback" not in good.parameters
    inner.behaviours["a"] = fail
    again = infer(dp, inputs=x(3.0))
    assert float(again.outputs["y"][0, 0]) == 3.0
    assert again.parameters["fallback_step"] == "last_good"
    assert again.parameters["answered_by"] == "a:1"
    with pytest.raises(InferenceError):  # another input: nothing to fall back to
        infer(dp, inputs=x(4.0))


def test_timeout_falls_back_and_cancels_the_primary() -> None:
    gate = asyncio.Event()  # never set: the primary hangs
    inner = inner_with(blocking(gate))
    dp = traffic(inner, spec(timeout_ms=20, fallback=chain({"kind": "model", "model": "backup"})))
    response = infer(dp)
    assert response.parameters["fallback"] == "timeout"
    assert inner.cancelled == ["a"]
    primary, backup = inner.calls
    assert primary.deadline == pytest.approx(1000.0 + 0.020)  # FakeClock starts at 1000
    assert backup.deadline is None  # the fallback gets the client's deadline, not the endpoint's


def test_timeout_without_fallback_is_deadline_exceeded() -> None:
    gate = asyncio.Event()
    dp = traffic(inner_with(blocking(gate)), spec(timeout_ms=10))
    with pytest.raises(DeadlineExceededError, match="timeout_ms=10") as info:
        infer(dp)
    assert info.value.code is ErrorCode.DEADLINE_EXCEEDED


def test_inner_deadline_error_counts_as_timeout() -> None:
    async def late(request: InferRequest) -> dict[str, Array]:
        raise DeadlineExceededError("did not answer before the request deadline")

    observer = RecordingObserver()
    dp = traffic(
        inner_with(late),
        spec(timeout_ms=50, fallback=chain({"kind": "static", "outputs": STATIC_ZERO})),
        observer=observer,
    )
    assert infer(dp).parameters["fallback"] == "timeout"
    assert observer.fallbacks == [("ep", "timeout")]


def test_static_default_respects_requested_outputs() -> None:
    outputs = {**STATIC_ZERO, "z": {"datatype": "INT64", "shape": [1], "data": [7]}}
    dp = traffic(inner_with(fail), spec(fallback=chain({"kind": "static", "outputs": outputs})))
    response = infer(dp, outputs=["z"])
    assert list(response.outputs) == ["z"]


def test_errors_keep_their_type_for_the_frontend() -> None:
    dp = traffic(inner_with(fail), spec())
    with pytest.raises(ModelYardError) as info:
        infer(dp)
    assert info.value.code is ErrorCode.INTERNAL
