"""Payload logging in-process: deterministic sampling, rates, redaction, a bounded queue that drops
and counts instead of blocking requests, and a flush on close that loses nothing accepted."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.app import make_loader
from modelyard.core.clock import FakeClock
from modelyard.core.model_cache import ModelCache
from modelyard.core.observer import InferEvent, Observers
from modelyard.core.serving import ServingDataPlane
from modelyard.monitoring.payload_log import (
    PayloadLogger,
    PayloadRates,
    encode_record,
    encode_tensor,
    is_sampled,
    sample_point,
)
from modelyard.monitoring.payload_sinks import JsonlSink, read_jsonl
from modelyard.registry.registry import Registry
from modelyard.runtime import RuntimeOptions
from modelyard.types import InferRequest, InferResponse, RequestContext
from tests.testmodels import simple_model


# ---- sampling and rates ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_id", "rate", "want"),
    [
        ("any", 0.0, False),
        ("any", 1.0, True),
        ("req-1", 0.5, sample_point("req-1") < 0.5),
        ("", 0.999999, sample_point("") < 0.999999),
    ],
)
def test_is_sampled(request_id: str, rate: float, want: bool) -> None:
    assert is_sampled(request_id, rate) is want


def test_sampling_is_a_stable_hash_with_the_right_share() -> None:
    assert sample_point("abc") == sample_point("abc")
    assert 0.0 <= sample_point("abc") < 1.0
    ids = [f"r{i}" for i in range(20_000)]
    share = sum(is_sampled(i, 0.1) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    # A lower rate logs a subset of what a higher one logs (same hash, smaller cut).
    assert {i for i in ids if is_sampled(i, 0.05)} <= {i for i in ids if is_sampled(i, 0.1)}


@pytest.mark.parametrize(
    ("endpoint", "model", "want"),
    [
        ("fraud-ep", "fraud", 0.9),  # endpoint override wins
        ("other-ep", "fraud", 0.5),  # then the model override
        ("other-ep", "ranker", 0.25),  # then the model's metadata
        ("other-ep", "pricing", 0.01),  # then the default
    ],
)
def test_rate_precedence(endpoint: str, model: str, want: float) -> None:
    rates = PayloadRates(0.01, {"fraud-ep": 0.9, "fraud": 0.5})
    rates.set_model_rates({"ranker": 0.25, "fraud": 0.0})
    assert rates.rate(endpoint, model) == want


def test_rates_refresh_from_model_metadata(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    reg.create_model("a", metadata={"payload_log_rate": 0.3})
    reg.create_model("b", metadata={"payload_log_rate": "lots"})  # ignored, with a warning
    reg.create_model("c", metadata={"payload_log_rate": 2})
    reg.create_model("d")
    rates = PayloadRates(0.0)
    rates.refresh(reg)
    assert [rates.rate(m, m) for m in "abcd"] == [0.3, 0.0, 0.0, 0.0]
    reg.close()


# ---- records -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("array", "want"),
    [
        (np.array([[1.5, 2.0]], dtype=np.float32), {"datatype": "FP32", "data": [1.5, 2.0]}),
        (np.array([1, 2, 3], dtype=np.int64), {"datatype": "INT64", "data": [1, 2, 3]}),
        (np.array([True, False]), {"datatype": "BOOL", "data": [True, False]}),
        (np.array([np.nan, np.inf]), {"datatype": "FP64", "data": ["nan", "inf"]}),
        (np.array([b"hi", "é".encode()], dtype=object), {"datatype": "BYTES", "data": ["hi", "é"]}),
        (
            np.array([b"\xff\x00"], dtype=object),
            {"datatype": "BYTES", "data": ["/wA="], "encoding": "base64"},
        ),
    ],
)
def test_encode_tensor(array: np.ndarray, want: dict[str, Any]) -> None:
    doc = encode_tensor(array)
    assert doc == {"shape": list(array.shape), **want}


def event_for(request_id: str, *, code: str = "OK") -> InferEvent:
    x = {"a": np.array([[1, 2]], dtype=np.int32), "secret": np.array([[9, 9]], dtype=np.int32)}
    return InferEvent(
        endpoint="ep",
        model="m",
        version="3",
        route="blue",
        code=code,
        latency_s=0.0123,
        request=InferRequest(inputs=x, parameters={"p": 1, "obj": object()}),
        response=None if code != "OK" else InferResponse("m", "3", {"y": x["a"], "secret": x["a"]}),
        ctx=RequestContext(request_id=request_id),
    )


def test_encode_record_redacts_inputs_and_outputs() -> None:
    record = encode_record(event_for("r1"), 1234.5, frozenset({"secret"}))
    assert record == {
        "ts": 1234.5,
        "request_id": "r1",
        "endpoint": "ep",
        "model": "m",
        "version": "3",
        "route": "blue",
        "code": "OK",
        "latency_ms": 12.3,
        "parameters": {"p": 1},
        "inputs": {"a": {"datatype": "INT32", "shape": [1, 2], "data": [1, 2]}},
        "outputs": {"y": {"datatype": "INT32", "shape": [1, 2], "data": [1, 2]}},
    }
    failed = encode_record(event_for("r2", code="INVALID_ARGUMENT"), 0.0, frozenset())
    assert failed["code"] == "INVALID_ARGUMENT" and failed["outputs"] == {}


# ---- the logger --------------------------------------------------------------------------------
class ListSink:
    """Keeps records in memory; ``gate`` (when given) blocks the writer until it is set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.records: list[Mapping[str, Any]] = []
        self.gate = gate
        self.entered = threading.Event()
        self.closed = False

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        self.records.extend(records)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Registry, ModelCache]]:
    reg = Registry(tmp_path / "reg")
    reg.push(simple_model(tmp_path / "simple.onnx"), name="simple", batching={"max_batch_size": 8})
    cache = ModelCache(make_loader(reg, RuntimeOptions()), budget_bytes=1 << 30)
    yield reg, cache
    cache.close()
    reg.close()


def run_requests(dp: ServingDataPlane, ids: list[str], concurrency: int = 50) -> None:
    async def one(i: int, request_id: str) -> None:
        inputs = {
            "INPUT0": np.full((1, 16), i, dtype=np.int32),
            "INPUT1": np.full((1, 16), 1, dtype=np.int32),
        }
        await dp.infer("simple", None, InferRequest(inputs=inputs), RequestContext(request_id))

    async def go() -> None:
        for start in range(0, len(ids), concurrency):
            chunk = list(enumerate(ids))[start : start + concurrency]
            await asyncio.gather(*(one(i, rid) for i, rid in chunk))

    asyncio.run(go())


def test_under_load_the_file_holds_exactly_the_sampled_requests(
    served: tuple[Registry, ModelCache], tmp_path: Path
) -> None:
    reg, cache = served
    clock = FakeClock()
    sink = JsonlSink(tmp_path / "payloads", replica="test", max_bytes=32 * 1024, clock=clock)
    logger = PayloadLogger(
        sink, PayloadRates(0.25), redact=("INPUT1", "OUTPUT1"), queue_size=4096, clock=clock
    )
    dp = ServingDataPlane(reg, cache, clock=clock, observer=Observers([logger]))
    ids = [f"load-{i:05d}" for i in range(2000)]
    run_requests(dp, ids)
    logger.close()
    dp.close()

    expected = {rid for rid in ids if is_sampled(rid, 0.25)}
    assert 400 < len(expected) < 600
    records = list(read_jsonl(tmp_path / "payloads"))
    assert sorted(r["request_id"] for r in records) == sorted(expected)
    assert logger.written == len(expected) and logger.dropped == 0 and logger.failed == 0
    assert len(list((tmp_path / "payloads").glob("*.jsonl"))) > 1  # it rotated by size
    for r in records:
        assert set(r["inputs"]) == {"INPUT0"} and set(r["outputs"]) == {"OUTPUT0"}
        i = ids.index(r["request_id"])
        assert r["inputs"]["INPUT0"]["data"] == [i] * 16
        assert r["outputs"]["OUTPUT0"]["data"] == [i + 1] * 16
        assert (r["model"], r["version"], r["code"]) == ("simple", "1", "OK")
    text = "".join(p.read_text() for p in (tmp_path / "payloads").glob("*.jsonl"))
    assert "INPUT1" not in text and "OUTPUT1" not in text


def test_a_full_queue_drops_and_counts_without_blocking_requests(
    served: tuple[Registry, ModelCache],
) -> None:
    reg, cache = served
    gate = threading.Event()
    sink = ListSink(gate)
    drops: list[int] = []
    logger = PayloadLogger(sink, PayloadRates(1.0), queue_size=5, on_drop=drops.append)
    dp = ServingDataPlane(reg, cache, observer=Observers([logger]))
    run_requests(dp, ["first"])
    assert sink.entered.wait(30)  # the writer holds "first" and is stuck in the sink
    ids = [f"r{i}" for i in range(300)]
    run_requests(dp, ids)  # returns although the writer is still blocked: nothing waited
    assert not gate.is_set()
    assert logger.dropped == 300 - 5 and sum(drops) == 295
    gate.set()
    logger.close()
    dp.close()
    logged = [r["request_id"] for r in sink.records]
    assert logged[0] == "first" and len(logged) == 6 and set(logged[1:]) <= set(ids)
    assert logger.written == 6 and sink.closed


def test_close_flushes_everything_accepted(served: tuple[Registry, ModelCache]) -> None:
    reg, cache = served
    gate = threading.Event()
    sink = ListSink(gate)
    logger = PayloadLogger(sink, PayloadRates(1.0), queue_size=1000)
    dp = ServingDataPlane(reg, cache, observer=Observers([logger]))
    run_requests(dp, [f"r{i}" for i in range(200)])
    assert not logger.flush(timeout=0.01)  # still queued behind the blocked writer
    gate.set()
    logger.close()
    dp.close()
    assert len(sink.records) == 200 and logger.dropped == 0
    logger.on_infer(event_for("late"))  # after close: dropped and counted, never lost silently
    assert logger.dropped == 1
    logger.close()  # idempotent


def test_a_failing_sink_is_counted_and_the_writer_goes_on() -> None:
    class Flaky(ListSink):
        calls = 0

        def write(self, records: Sequence[Mapping[str, Any]]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise OSError("disk full")
            super().write(records)

    sink = Flaky()
    logger = PayloadLogger(sink, PayloadRates(1.0))
    logger.on_infer(event_for("a"))
    assert logger.flush(timeout=30)
    logger.on_infer(event_for("b"))
    logger.close()
    assert logger.failed == 1 and logger.written == 1
    assert [r["request_id"] for r in sink.records] == ["b"]


def test_unsampled_requests_never_touch_the_queue() -> None:
    sink = ListSink()
    logger = PayloadLogger(sink, PayloadRates(0.0, {"ep": 0.0}), queue_size=1)
    for i in range(100):
        logger.on_infer(event_for(f"x{i}"))
    logger.close()
    assert sink.records == [] and logger.dropped == 0
