"""Helpers for the stream consumer's unit tests: a fake model and a way to run a consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson

from modelyard.jobs.stream import StreamConsumer, StreamStats
from modelyard.types import Datatype, InferRequest, InferResponse, RequestContext, Signature
from modelyard.types import TensorSpec as Spec

SIGNATURE = Signature(
    inputs=(Spec(name="x", datatype=Datatype.FP32, shape=(-1, 2)),),
    outputs=(Spec(name="y", datatype=Datatype.FP32, shape=(-1, 2)),),
)


def message(i: int, x: object = None) -> bytes:
    """Message ``i`` with input row ``[i, i + 0.5]`` (or ``x``)."""
    return orjson.dumps({"id": i, "inputs": {"x": [i, i + 0.5] if x is None else x}})


class FakeModel:
    """y = 2x. ``gate`` holds every call until set. A call that holds a row whose first value
    is ``i`` raises ``poison[i]`` (always) or the next of ``failures[i]`` (once each), as a
    model fails a whole batch for one bad row."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate
        self.poison: dict[int, Exception] = {}
        self.failures: dict[int, list[Exception]] = {}
        self.signature_failures: list[Exception] = []
        self.calls = 0
        self.rows: list[int] = []
        self.running = 0
        self.most_running = 0

    async def signature(self) -> Signature:
        if self.signature_failures and self.calls:  # run() itself gets it: fail later calls
            raise self.signature_failures.pop(0)
        return SIGNATURE

    async def infer(self, request: InferRequest, ctx: RequestContext) -> InferResponse:
        self.calls += 1
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            x = request.inputs["x"]
            self.rows.append(len(x))
            for value in (int(v) for v in x[:, 0]):
                if value in self.poison:
                    raise self.poison[value]
                if self.failures.get(value):
                    raise self.failures[value].pop(0)
            return InferResponse("m", "3", {"y": x * 2}, request.id)
        finally:
            self.running -= 1


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Yield to the loop until ``predicate()`` holds (TimeoutError after ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.001)


async def run_until(consumer: StreamConsumer, predicate: Callable[[], bool]) -> StreamStats:
    """Run ``consumer`` until ``predicate()`` holds, then stop it gracefully."""
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: predicate() or task.done())
    finally:
        consumer.stop()
    return await task


def results(bodies: list[bytes]) -> dict[object, dict[str, object]]:
    """Result documents by message id."""
    docs = [orjson.loads(b) for b in bodies]
    return {doc["id"]: doc for doc in docs}
