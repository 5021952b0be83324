"""OpenTelemetry spans over the real dataplane, exported to the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from modelyard.app import make_loader
from modelyard.core.model_cache import ModelCache
from modelyard.core.serving import ServingDataPlane
from modelyard.errors import MissingDependencyError
from modelyard.frontends.grpc import GrpcInferenceService
from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.frontends.rest import create_rest_app
from modelyard.monitoring import tracing
from modelyard.registry.registry import Registry
from modelyard.runtime import RuntimeOptions
from modelyard.settings import Settings
from modelyard.types import InferRequest, RequestContext
from tests.testmodels import linear_fp32_model, simple_model
from tests.unit.frontends.conftest import Client

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SIMPLE = {
    "inputs": [
        {"name": n, "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}
        for n in ("INPUT0", "INPUT1")
    ]
}
LINEAR = {"inputs": [{"name": "input", "shape": [2, 20], "datatype": "FP32", "data": [0.5] * 40}]}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    stop = tracing.configure_tracing(exporter=exporter)
    yield exporter
    stop()
    assert not tracing.enabled()


@pytest.fixture
def dataplane(tmp_path: Path) -> Iterator[ServingDataPlane]:
    reg = Registry(tmp_path / "reg")
    reg.push(simple_model(tmp_path / "simple.onnx"), name="simple")
    linear = linear_fp32_model(tmp_path / "linear.onnx")
    reg.push(linear, name="linear_batched", batching={"max_batch_size": 8})
    cache = ModelCache(make_loader(reg, RuntimeOptions()), budget_bytes=1 << 30)
    dp = ServingDataPlane(reg, cache, resolve_ttl_s=0.0)
    yield dp
    cache.close()
    dp.close()
    reg.close()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    finished = exporter.get_finished_spans()
    named = {s.name: s for s in finished}
    assert len(named) == len(finished), [s.name for s in finished]
    return named


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def assert_chain(named: dict[str, ReadableSpan], *names: str) -> None:
    """Each span is the parent of the next one, all in one trace."""
    chain = [named[n] for n in names]
    for parent, child in itertools.pairwise(chain):
        assert child.context is not None and parent.context is not None
        assert parent_id(child) == parent.context.span_id, (parent.name, child.name)
        assert child.context.trace_id == parent.context.trace_id


def test_one_rest_request_yields_frontend_dataplane_batcher_runtime(
    spans: InMemorySpanExporter, dataplane: ServingDataPlane
) -> None:
    client = Client(create_rest_app(dataplane, Settings.model_construct()))
    assert client.post("/v2/models/linear_batched/infer", json=LINEAR).status_code == 200
    named = by_name(spans)
    assert set(named) == {
        tracing.SPAN_HTTP,
        tracing.SPAN_DATAPLANE,
        tracing.SPAN_BATCHER,
        tracing.SPAN_RUNTIME,
    }
    assert_chain(
        named, tracing.SPAN_HTTP, tracing.SPAN_DATAPLANE, tracing.SPAN_BATCHER, tracing.SPAN_RUNTIME
    )
    frontend = named[tracing.SPAN_HTTP]
    assert frontend.parent is None and frontend.kind is SpanKind.SERVER
    assert named[tracing.SPAN_DATAPLANE].attributes is not None
    assert named[tracing.SPAN_DATAPLANE].attributes["modelyard.model"] == "linear_batched"


def test_an_unbatched_model_has_no_batcher_span(
    spans: InMemorySpanExporter, dataplane: ServingDataPlane
) -> None:
    client = Client(create_rest_app(dataplane, Settings.model_construct()))
    assert client.post("/v2/models/simple/infer", json=SIMPLE).status_code == 200
    named = by_name(spans)
    assert tracing.SPAN_BATCHER not in named
    assert_chain(named, tracing.SPAN_HTTP, tracing.SPAN_DATAPLANE, tracing.SPAN_RUNTIME)


def test_an_incoming_traceparent_is_continued(
    spans: InMemorySpanExporter, dataplane: ServingDataPlane
) -> None:
    client = Client(create_rest_app(dataplane, Settings.model_construct()))
    response = client.post(
        "/v2/models/simple/infer", json=SIMPLE, headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 200
    frontend = by_name(spans)[tracing.SPAN_HTTP]
    assert frontend.context is not None
    assert format(frontend.context.trace_id, "032x") == TRACE_ID
    assert parent_id(frontend) == int(PARENT_ID, 16)
    assert frontend.parent is not None and frontend.parent.is_remote


class FakeGrpcContext:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def time_remaining(self) -> float | None:
        return None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")


def test_grpc_metadata_traceparent_is_continued(
    spans: InMemorySpanExporter, dataplane: ServingDataPlane
) -> None:
    service = GrpcInferenceService(dataplane, Settings.model_construct())
    request = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        tensor = request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        tensor.contents.int_contents.extend([2] * 16)
    context = FakeGrpcContext((("traceparent", TRACEPARENT),))
    response = asyncio.run(service.model_infer(request, context))  # type: ignore[arg-type]
    assert response.model_name == "simple"
    named = by_name(spans)
    assert_chain(named, tracing.SPAN_GRPC, tracing.SPAN_DATAPLANE, tracing.SPAN_RUNTIME)
    assert parent_id(named[tracing.SPAN_GRPC]) == int(PARENT_ID, 16)


def test_a_failed_request_marks_its_spans_as_errors(
    spans: InMemorySpanExporter, dataplane: ServingDataPlane
) -> None:
    client = Client(create_rest_app(dataplane, Settings.model_construct()))
    assert client.post("/v2/models/nosuch/infer", json=SIMPLE).status_code == 404
    named = by_name(spans)
    assert named[tracing.SPAN_DATAPLANE].status.status_code is StatusCode.ERROR
    assert named[tracing.SPAN_HTTP].status.status_code is StatusCode.ERROR


def test_shadow_tasks_and_headers_carry_the_trace(spans: InMemorySpanExporter) -> None:
    """What the traffic layer does: a shadow spawned as a task joins the request's trace, and
    inject() writes the current traceparent for calls to other services."""
    ctx = RequestContext(headers={"traceparent": TRACEPARENT})
    outgoing: dict[str, str] = {}

    async def shadow() -> None:
        with tracing.start_span(tracing.SPAN_SHADOW, ctx):
            tracing.inject(outgoing)

    async def request() -> None:
        with tracing.start_span(tracing.SPAN_TRAFFIC, ctx):
            await asyncio.create_task(shadow())

    asyncio.run(request())
    named = by_name(spans)
    assert_chain(named, tracing.SPAN_TRAFFIC, tracing.SPAN_SHADOW)
    shadow_span = named[tracing.SPAN_SHADOW]
    assert shadow_span.context is not None
    assert outgoing["traceparent"] == f"00-{TRACE_ID}-{shadow_span.context.span_id:016x}-01"


def test_work_on_a_thread_pool_stays_in_the_trace(spans: InMemorySpanExporter) -> None:
    def work() -> str | None:
        with tracing.start_span(tracing.SPAN_RUNTIME):
            return tracing.current_trace_id()

    async def main() -> str | None:
        with tracing.start_span(tracing.SPAN_DATAPLANE):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, tracing.carry_context(work))

    trace_id = asyncio.run(main())
    named = by_name(spans)
    assert_chain(named, tracing.SPAN_DATAPLANE, tracing.SPAN_RUNTIME)
    assert named[tracing.SPAN_DATAPLANE].context is not None
    assert trace_id == format(named[tracing.SPAN_DATAPLANE].context.trace_id, "032x")


def test_tracing_off_costs_nothing_and_records_nothing(dataplane: ServingDataPlane) -> None:
    assert not tracing.enabled()

    def fn() -> int:
        return 1

    assert tracing.carry_context(fn) is fn
    assert tracing.traced(fn, tracing.SPAN_RUNTIME) is fn
    assert tracing.start_span("a") is tracing.start_span("b", RequestContext())
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {} and tracing.current_trace_id() is None
    request = InferRequest({n: np.ones((1, 16), np.int32) for n in ("INPUT0", "INPUT1")})
    response = asyncio.run(dataplane.infer("simple", None, request, RequestContext()))
    assert response.model_version == "1"


def test_missing_opentelemetry_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(MissingDependencyError, match=r"modelyard\[otel\]"):
        tracing.configure_tracing()
    assert not tracing.enabled()
