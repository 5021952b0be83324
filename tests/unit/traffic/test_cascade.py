"""Cascade: the pure escalation rule (table) and the cascade through the dataplane."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelyard.traffic.cascade import applies_to, confidence, needs_escalation
from modelyard.traffic.spec import Cascade, Route
from modelyard.types import Array, InferRequest
from tests.unit.traffic.fakes import FakeInner, RecordingObserver, infer, spec, traffic, x


@pytest.mark.parametrize(
    ("scores", "threshold", "escalate"),
    [
        ([[0.9, 0.1]], 0.8, False),
        ([[0.6, 0.4]], 0.8, True),
        ([[0.8, 0.2]], 0.8, False),  # at the threshold is confident enough
        ([[0.9, 0.1], [0.5, 0.5]], 0.8, True),  # any unsure row escalates the request
        ([[np.nan, 0.1]], 0.5, True),  # NaN is never confident
        ([0.95], 0.9, False),  # one score per row
        ([[[0.1, 0.95]]], 0.9, False),  # deeper outputs: max over everything but the batch dim
        (np.zeros((0, 2)), 0.5, False),  # no rows: nothing to escalate
    ],
)
def test_needs_escalation(scores: Any, threshold: float, escalate: bool) -> None:
    assert needs_escalation(np.asarray(scores, dtype=np.float32), threshold) is escalate


def test_confidence_of_a_scalar() -> None:
    assert confidence(np.float32(0.7)).tolist() == pytest.approx([0.7])


CASCADE = Cascade(first={"model": "small"}, then={"model": "big"}, output="y", threshold=0.8)


@pytest.mark.parametrize(
    ("route", "applies"),
    [
        (Route(name="r", model="small", weight=100), True),
        (Route(name="r", model="small", version=3, weight=100), True),  # first names no version
        (Route(name="r", model="big", weight=100), False),
    ],
)
def test_applies_to_routes_serving_the_first_model(route: Route, applies: bool) -> None:
    assert applies_to(CASCADE, route) is applies


def test_applies_to_a_pinned_first_version_only() -> None:
    pinned = CASCADE.model_copy(update={"first": CASCADE.first.model_copy(update={"version": 2})})
    assert applies_to(pinned, Route(name="r", model="small", version=2, weight=100))
    assert not applies_to(pinned, Route(name="r", model="small", version=3, weight=100))
    assert not applies_to(None, Route(name="r", model="small", weight=100))


# ---- through the dataplane ----------------------------------------------------------------------
def scored(inner: FakeInner, model: str) -> None:
    """``model`` answers y = its input as a confidence row, plus a label output."""

    async def run(request: InferRequest) -> dict[str, Array]:
        values = np.asarray(request.inputs["x"], dtype=np.float32)
        return {"y": values, "label": np.full(values.shape[:1], model.encode(), dtype=object)}

    inner.behaviours[model] = run


def cascade_endpoint(**extra: Any) -> Any:
    return spec(
        routes=[{"name": "main", "model": "small", "weight": 100}],
        cascade={
            "first": {"model": "small"},
            "then": {"model": "big"},
            "output": "y",
            "threshold": 0.8,
        },
        **extra,
    )


def two_models() -> FakeInner:
    inner = FakeInner()
    inner.add("small", "1")
    inner.add("big", "4")
    scored(inner, "small")
    scored(inner, "big")
    return inner


def test_confident_first_answers() -> None:
    inner = two_models()
    response = infer(traffic(inner, cascade_endpoint()), inputs=x(0.9))
    assert response.parameters == {"route": "main", "answered_by": "small:1", "cascade": "first"}
    assert [c.model for c in inner.calls] == ["small"]


def test_unsure_first_escalates_to_then() -> None:
    inner = two_models()
    response = infer(traffic(inner, cascade_endpoint()), inputs=x(0.5))
    assert response.parameters["cascade"] == "then"
    assert response.parameters["answered_by"] == "big:4"
    assert response.model_version == "4"
    assert [(c.model, c.route) for c in inner.calls] == [("small", "main"), ("big", "main")]


def test_cascade_output_is_fetched_even_when_not_requested() -> None:
    inner = two_models()
    response = infer(traffic(inner, cascade_endpoint()), inputs=x(0.9), outputs=["label"])
    assert list(response.outputs) == ["label"]
    assert response.parameters["cascade"] == "first"


def test_routes_of_other_models_do_not_cascade() -> None:
    inner = two_models()
    inner.add("other", "1")
    endpoint = spec(
        routes=[
            {"name": "main", "model": "small", "weight": 50},
            {"name": "side", "model": "other", "weight": 50},
        ],
        cascade={
            "first": {"model": "small"},
            "then": {"model": "big"},
            "output": "y",
            "threshold": 0.8,
        },
    )
    dp = traffic(inner, endpoint, rng=lambda: 0.99)
    response = infer(dp, inputs=x(0.1))
    assert response.parameters == {"route": "side", "answered_by": "other:1"}


def test_cached_cascade_answers_remember_which_stage_answered() -> None:
    inner = two_models()
    dp = traffic(inner, cascade_endpoint(cache={}), observer=RecordingObserver())
    infer(dp, inputs=x(0.5))
    again = infer(dp, inputs=x(0.5))
    assert again.parameters == {
        "route": "main",
        "answered_by": "big:4",
        "cascade": "then",
        "cache": "hit",
    }
    assert len(inner.calls) == 2


def test_a_new_then_version_invalidates_cached_cascade_answers() -> None:
    inner = two_models()
    dp = traffic(inner, cascade_endpoint(cache={}), observer=RecordingObserver())
    infer(dp, inputs=x(0.5))
    inner.add("big", "5")
    scored(inner, "big")
    response = infer(dp, inputs=x(0.5))
    assert "cache" not in response.parameters and response.model_version == "5"
