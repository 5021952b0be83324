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
    """y = 2x. ``gate`` holds every call until set; ``failures[id]`` is raised (in order)
    by the calls for that message id."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate
        self.failures: dict[str, list[Exception]] = {}
        self.calls = 0
        self.running = 0
        self.most_running = 0

    async def signature(self) -> Signature:
        return SIGNATURE

    async def infer(self, request: InferRequest, ctx: RequestContext) -> InferResponse:
        self.calls += 1
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            queued = self.failures.get(str(request.id))
            if queued:
                raise queued.pop(0)
            return InferResponse("m", "3", {"y": request.inputs["x"] * 2}, request.id)
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
