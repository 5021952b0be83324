"""A scripted inner dataplane and helpers for the traffic layer's unit tests (no registry,
no sockets): each model answers ``y = x * factor``, or fails, blocks or returns NaN as told."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelyard.core.clock import FakeClock
from modelyard.core.dataplane import DataPlane
from modelyard.core.observer import Observer
from modelyard.errors import InferenceError, ModelNotFoundError
from modelyard.registry.endpoints import EndpointRecord
from modelyard.traffic.dataplane import TrafficDataPlane
from modelyard.traffic.spec import EndpointSpec, parse_spec
from modelyard.types import (
    Array,
    Datatype,
    InferRequest,
    InferResponse,
    ModelMetadata,
    RequestContext,
    TensorSpec,
)

Behaviour = Callable[[InferRequest], Awaitable[dict[str, Array]]]


@dataclass
class Call:
    model: str
    version: str | None
    route: str | None
    endpoint: str | None
    deadline: float | None


@dataclass
class FakeInner(DataPlane):
    """Models by name: ``versions`` (the version a None/alias ref resolves to), ``factor``
    (y = x * factor), and optional scripted ``behaviours`` that replace the answer."""

    versions: dict[str, str] = field(default_factory=dict)
    factors: dict[str, float] = field(default_factory=dict)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def add(self, model: str, version: str = "1", factor: float = 1.0) -> None:
        self.versions[model] = version
        self.factors[model] = factor

    def version_of(self, model: str, ref: str | None) -> str:
        if model not in self.versions:
            raise ModelNotFoundError(f"model {model!r} not found")
        return ref if ref is not None and ref.isdigit() else self.versions[model]

    async def resolve(self, model: str, ref: str | None) -> str:
        return self.version_of(model, ref)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        self.version_of(name, version)
        spec = TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 1))
        out = TensorSpec(name="y", datatype=Datatype.FP32, shape=(-1, 1))
        return ModelMetadata(name, ("1",), "fake", (spec,), (out,), {"served": name})

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        return name in self.versions

    async def infer(
        self, name: str, version: str | None, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        self.calls.append(Call(name, version, ctx.route, ctx.endpoint, ctx.deadline))
        served = self.version_of(name, version)
        behaviour = self.behaviours.get(name)
        try:
            if behaviour is not None:
                outputs = await behaviour(request)
            else:
                outputs = {"y": np.asarray(request.inputs["x"]) * self.factors[name]}
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        if request.outputs is not None:
            outputs = {k: v for k, v in outputs.items() if k in request.outputs}
        return InferResponse(name, served, outputs, id=request.id)


async def fail(request: InferRequest) -> dict[str, Array]:
    raise InferenceError("model failed: boom")


async def nan(request: InferRequest) -> dict[str, Array]:
    return {"y": np.full(np.shape(request.inputs["x"]), np.nan, dtype=np.float32)}


def blocking(gate: asyncio.Event, result: float = 0.0) -> Behaviour:
    async def run(request: InferRequest) -> dict[str, Array]:
        await gate.wait()
        return {"y": np.full(np.shape(request.inputs["x"]), result, dtype=np.float32)}

    return run


@dataclass
class RecordingObserver(Observer):
    fallbacks: list[tuple[str, str]] = field(default_factory=list)
    lookups: list[tuple[str, bool]] = field(default_factory=list)
    answers: list[tuple[str, str, str]] = field(default_factory=list)

    def on_answer(self, endpoint: str, code: str, source: str, latency_s: float) -> None:
        self.answers.append((endpoint, code, source))

    def on_fallback(self, endpoint: str, reason: str) -> None:
        self.fallbacks.append((endpoint, reason))

    def on_cache_lookup(self, endpoint: str, hit: bool) -> None:
        self.lookups.append((endpoint, hit))


def spec(**doc: Any) -> EndpointSpec:
    doc.setdefault("name", "ep")
    doc.setdefault("routes", [{"name": "main", "model": "a", "weight": 100}])
    return parse_spec(doc)


def record(endpoint: EndpointSpec, revision: int = 1) -> EndpointRecord:
    return EndpointRecord(endpoint.name, endpoint, revision, 0.0, 0.0)


def traffic(
    inner: FakeInner,
    *specs: EndpointSpec,
    clock: FakeClock | None = None,
    observer: Observer | None = None,
    rng: Callable[[], float] | None = None,
) -> TrafficDataPlane:
    kwargs: dict[str, Any] = {} if rng is None else {"rng": rng}
    dp = TrafficDataPlane(
        inner,
        resolve=inner.resolve,
        observer=observer,
        clock=clock or FakeClock(),
        **kwargs,
    )
    dp.load(record(s) for s in specs)
    return dp


def x(value: float = 1.0, rows: int = 1) -> dict[str, Array]:
    return {"x": np.full((rows, 1), value, dtype=np.float32)}


def infer(
    dp: DataPlane,
    name: str = "ep",
    inputs: dict[str, Array] | None = None,
    *,
    version: str | None = None,
    ctx: RequestContext | None = None,
    outputs: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
) -> InferResponse:
    request = InferRequest(
        inputs=inputs if inputs is not None else x(), outputs=outputs, parameters=parameters or {}
    )
    return asyncio.run(dp.infer(name, version, request, ctx or RequestContext()))
