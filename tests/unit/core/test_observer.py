"""The observer fan-out: every hook reaches every observer that implements it, in order, and a
failing observer is logged without keeping the event from the others."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from modelyard.core.observer import BatchEvent, CacheEvent, InferEvent, Observer, Observers
from modelyard.types import InferRequest, RequestContext


def infer_event() -> InferEvent:
    return InferEvent(
        endpoint="m",
        model="m",
        version="1",
        route="",
        code="OK",
        latency_s=0.001,
        request=InferRequest(inputs={"x": np.zeros((1, 2), dtype=np.float32)}),
        response=None,
        ctx=RequestContext(),
    )


BATCH = BatchEvent("m", "1", rows=1, requests=1, queue_wait_s=0.0, infer_s=0.001)


class Recorder(Observer):
    def __init__(self, name: str, seen: list[tuple[str, str]]) -> None:
        self.name = name
        self.seen = seen

    def on_infer(self, event: InferEvent) -> None:
        self.seen.append((self.name, "infer"))

    def on_batch(self, event: BatchEvent) -> None:
        self.seen.append((self.name, "batch"))


class InferOnly(Observer):
    def __init__(self, seen: list[tuple[str, str]]) -> None:
        self.seen = seen

    def on_infer(self, event: InferEvent) -> None:
        self.seen.append(("infer-only", "infer"))


class Failing(Observer):
    def on_infer(self, event: InferEvent) -> None:
        raise RuntimeError("boom")

    def on_batch(self, event: BatchEvent) -> None:
        raise RuntimeError("boom")


def test_each_hook_reaches_the_observers_that_implement_it_in_order() -> None:
    seen: list[tuple[str, str]] = []
    first, second = Recorder("a", seen), Recorder("b", seen)
    plain, only = Observer(), InferOnly(seen)
    observers = Observers([first, plain])
    observers.add(only)
    observers.add(second)
    assert observers.observers == (first, plain, only, second)
    observers.on_infer(infer_event())
    observers.on_batch(BATCH)
    observers.on_cache(CacheEvent("load", "m", "1"))  # nobody implements it: nothing happens
    assert seen == [
        ("a", "infer"),
        ("infer-only", "infer"),
        ("b", "infer"),
        ("a", "batch"),
        ("b", "batch"),
    ]


def test_hooks_set_on_an_instance_and_duck_typed_observers_are_called() -> None:
    seen: list[str] = []
    patched = Observer()
    patched.on_batch = lambda event: seen.append("patched")  # type: ignore[method-assign]

    class Duck:
        def on_infer(self, event: InferEvent) -> None:
            seen.append("duck")

    observers = Observers([patched, Duck()])  # type: ignore[list-item]
    observers.on_infer(infer_event())
    observers.on_batch(BATCH)  # Duck has no on_batch: logged like any failing observer
    assert seen == ["duck", "patched"]


def test_nested_fan_outs_pass_events_on() -> None:
    seen: list[tuple[str, str]] = []
    observers = Observers([Observers([Recorder("inner", seen)]), Recorder("outer", seen)])
    observers.on_batch(BATCH)
    observers.on_infer(infer_event())
    assert seen == [("inner", "batch"), ("outer", "batch"), ("inner", "infer"), ("outer", "infer")]


def test_a_failing_observer_is_logged_and_the_others_still_see_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, str]] = []
    observers = Observers([Failing(), Recorder("a", seen)])
    with caplog.at_level(logging.ERROR, logger="modelyard.observer"):
        observers.on_infer(infer_event())
        observers.on_batch(BATCH)
    assert seen == [("a", "infer"), ("a", "batch")]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "failed on an infer event" in messages[0]
    assert "failed on a batch event" in messages[1]
