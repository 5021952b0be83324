"""Every request to an endpoint reports what its client got (``on_answer``): the code, and
whether the route, the fallback chain or the response cache answered. Model calls are counted
per call elsewhere; this is the client's view (a fallback's 200 is an OK here)."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import InferenceError, InvalidInputError
from modelyard.types import Array, InferRequest
from tests.unit.traffic.fakes import FakeInner, RecordingObserver, infer, spec, traffic

STATIC = {"kind": "static", "outputs": {"y": {"datatype": "FP32", "shape": [1, 1], "data": [0]}}}


async def fail(request: InferRequest) -> dict[str, Array]:
    raise InferenceError("boom")


async def bad_input(request: InferRequest) -> dict[str, Array]:
    raise InvalidInputError("input 'x': wrong shape")


def inner_with(behaviour: Any = None) -> FakeInner:
    inner = FakeInner()
    inner.add("a", "1", factor=1.0)
    if behaviour is not None:
        inner.behaviours["a"] = behaviour
    return inner


@pytest.mark.parametrize(
    ("behaviour", "extra", "answer"),
    [
        (None, {}, ("ep", "OK", "route")),
        (fail, {"fallback": {"chain": [STATIC]}}, ("ep", "OK", "fallback")),
        (fail, {}, ("ep", "INTERNAL", "none")),
        (bad_input, {"fallback": {"chain": [STATIC]}}, ("ep", "INVALID_ARGUMENT", "none")),
    ],
)
def test_each_request_reports_its_clients_answer(
    behaviour: Any, extra: dict[str, Any], answer: tuple[str, str, str]
) -> None:
    observer = RecordingObserver()
    dp = traffic(inner_with(behaviour), spec(**extra), observer=observer)
    try:
        infer(dp)
    except (InferenceError, InvalidInputError):
        pass
    assert observer.answers == [answer]


def test_a_response_cache_hit_is_an_answer_from_the_cache() -> None:
    observer = RecordingObserver()
    dp = traffic(inner_with(), spec(cache={"ttl_s": 60}), observer=observer)
    infer(dp)
    infer(dp)
    assert observer.answers == [("ep", "OK", "route"), ("ep", "OK", "cache")]


def test_a_model_called_by_name_reports_no_endpoint_answer() -> None:
    observer = RecordingObserver()
    dp = traffic(inner_with(), spec(), observer=observer)
    infer(dp, "a")
    assert observer.answers == []
