"""The dataplane over a real (SQLite + local files) registry and a real model cache, in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelyard.app import make_loader
from modelyard.core.clock import FakeClock
from modelyard.core.model_cache import CacheKey, ModelCache
from modelyard.core.serving import ServingDataPlane
from modelyard.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotFoundError,
    UnavailableError,
)
from modelyard.registry.registry import Registry
from modelyard.runtime import RuntimeOptions
from modelyard.types import Array, Datatype, InferRequest, InferResponse, RequestContext
from tests.testmodels import identity_model, linear_fp32_model, simple_model


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "reg")
    reg.push(simple_model(tmp_path / "m" / "simple.onnx"), name="simple", alias="production")
    reg.push(identity_model(Datatype.FP32, tmp_path / "m" / "f.onnx"), name="identity_fp32")
    reg.push(identity_model(Datatype.BYTES, tmp_path / "m" / "b.onnx"), name="identity_bytes")
    linear = linear_fp32_model(tmp_path / "m" / "linear.onnx")
    reg.push(linear, name="linear")
    reg.push(linear, name="linear_batched", batching={"max_batch_size": 16})
    yield reg
    reg.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dataplane(registry: Registry, clock: FakeClock) -> Iterator[ServingDataPlane]:
    cache = ModelCache(make_loader(registry, RuntimeOptions()), budget_bytes=1 << 30, clock=clock)
    dp = ServingDataPlane(registry, cache, resolve_ttl_s=0.0, clock=clock)
    yield dp
    cache.close()
    dp.close()


def simple_inputs(a: int = 1, b: int = 1) -> dict[str, Array]:
    return {
        "INPUT0": np.full((1, 16), a, dtype=np.int32),
        "INPUT1": np.full((1, 16), b, dtype=np.int32),
    }


def infer(
    dp: ServingDataPlane,
    name: str,
    inputs: dict[str, Array],
    *,
    version: str | None = None,
    outputs: list[str] | None = None,
    ctx: RequestContext | None = None,
) -> InferResponse:
    req = InferRequest(inputs=inputs, outputs=outputs)
    return asyncio.run(dp.infer(name, version, req, ctx or RequestContext()))


def test_infer_serves_production_and_names_the_version(dataplane: ServingDataPlane) -> None:
    resp = infer(dataplane, "simple", simple_inputs(5, 2))
    assert resp.model_name == "simple" and resp.model_version == "1"
    np.testing.assert_array_equal(resp.outputs["OUTPUT0"], np.full((1, 16), 7))
    np.testing.assert_array_equal(resp.outputs["OUTPUT1"], np.full((1, 16), 3))


def test_requested_outputs_are_selected(dataplane: ServingDataPlane) -> None:
    resp = infer(dataplane, "simple", simple_inputs(), outputs=["OUTPUT1"])
    assert list(resp.outputs) == ["OUTPUT1"]
    with pytest.raises(InvalidInputError, match="OUTPUT9"):
        infer(dataplane, "simple", simple_inputs(), outputs=["OUTPUT9"])


def test_unknown_model_and_version(dataplane: ServingDataPlane) -> None:
    with pytest.raises(ModelNotFoundError):
        infer(dataplane, "nope", simple_inputs())
    with pytest.raises(ModelNotFoundError):
        infer(dataplane, "simple", simple_inputs(), version="7")


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"INPUT0": np.zeros((1, 16), np.int32)}, "missing input 'INPUT1'"),
        ({**simple_inputs(), "EXTRA": np.zeros((1, 16), np.int32)}, "unexpected input 'EXTRA'"),
        (
            {"INPUT0": np.zeros((1, 16), np.int64), "INPUT1": np.zeros((1, 16), np.int32)},
            "'INPUT0' has datatype INT64",
        ),
        (
            {"INPUT0": np.zeros((1, 15), np.int32), "INPUT1": np.zeros((1, 15), np.int32)},
            "'INPUT0' has shape \\[1, 15\\]",
        ),
    ],
)
def test_signature_violations_are_rejected_before_work(
    dataplane: ServingDataPlane, inputs: dict[str, Array], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        infer(dataplane, "simple", inputs)
    # the next valid request still succeeds
    assert infer(dataplane, "simple", simple_inputs()).model_version == "1"


def test_nan_is_rejected_unless_allowed(dataplane: ServingDataPlane) -> None:
    bad = np.array([[1.0, np.nan]], dtype=np.float32)
    with pytest.raises(InvalidInputError, match="'INPUT0' contains NaN or Inf"):
        infer(dataplane, "identity_fp32", {"INPUT0": bad})


def test_bytes_round_trip_and_non_utf8_is_rejected(dataplane: ServingDataPlane) -> None:
    text = np.array([["héllo".encode(), b""]], dtype=object)
    resp = infer(dataplane, "identity_bytes", {"INPUT0": text})
    assert resp.outputs["OUTPUT0"].tolist() == [["héllo".encode(), b""]]
    with pytest.raises(InvalidInputError, match="'INPUT0' element 0 is not valid UTF-8"):
        infer(dataplane, "identity_bytes", {"INPUT0": np.array([[b"\xff\xfe"]], dtype=object)})


def test_expired_deadline_is_rejected(dataplane: ServingDataPlane, clock: FakeClock) -> None:
    ctx = RequestContext(deadline=clock.monotonic() - 1)
    with pytest.raises(DeadlineExceededError):
        infer(dataplane, "simple", simple_inputs(), ctx=ctx)


def test_unload_then_load_through_the_repository_api(dataplane: ServingDataPlane) -> None:
    async def main() -> None:
        await dataplane.load_model("simple")
        index = {e.name: e for e in await dataplane.repository_index()}
        assert index["simple"].state == "READY"
        assert index["linear"].state == "UNAVAILABLE"
        ready_only = await dataplane.repository_index(ready_only=True)
        assert [e.name for e in ready_only] == ["simple"]
        await dataplane.unload_model("simple")
        assert not await dataplane.model_ready("simple")
        with pytest.raises(UnavailableError, match="unloaded"):
            await dataplane.infer("simple", None, InferRequest(simple_inputs()), RequestContext())
        await dataplane.load_model("simple")
        assert await dataplane.model_ready("simple")

    asyncio.run(main())


def test_metadata(dataplane: ServingDataPlane) -> None:
    md = asyncio.run(dataplane.model_metadata("simple"))
    assert md.versions == ("1",)
    assert [s.name for s in md.inputs] == ["INPUT0", "INPUT1"]
    assert md.platform == "onnx"
    assert dataplane.server_metadata().name == "modelyard"


def test_batched_and_unbatched_versions_answer_identically(dataplane: ServingDataPlane) -> None:
    rng = np.random.default_rng(1)
    rows = [rng.normal(size=(1, 20)).astype(np.float32) for _ in range(40)]

    async def run(name: str) -> list[Array]:
        reqs = [
            dataplane.infer(name, None, InferRequest({"input": r}), RequestContext()) for r in rows
        ]
        return [r.outputs["output"] for r in await asyncio.gather(*reqs)]

    plain = asyncio.run(run("linear"))
    batched = asyncio.run(run("linear_batched"))
    for a, b in zip(plain, batched, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    (_runtime, batcher) = next(iter(dataplane._batchers.values()))
    assert batcher.stats.requests == 40
    assert batcher.stats.batches < 40


def test_a_request_with_no_rows_is_answered_by_a_batched_version(
    dataplane: ServingDataPlane,
) -> None:
    # Found by the server fuzz test: queued, it never filled or aged a batch and hung.
    empty = np.zeros((0, 20), dtype=np.float32)
    for name in ("linear", "linear_batched"):
        out = asyncio.run(
            asyncio.wait_for(
                dataplane.infer(name, None, InferRequest({"input": empty}), RequestContext()), 10
            )
        )
        assert out.outputs["output"].shape == (0, 1)


def test_fast_models_run_on_the_event_loop_after_the_first_call(registry: Registry) -> None:
    import threading

    cache = ModelCache(make_loader(registry, RuntimeOptions()), budget_bytes=1 << 30)
    dp = ServingDataPlane(registry, cache, inline_predict_s=1.0)  # everything counts as fast
    threads: list[str] = []

    async def main() -> None:
        runtime = await cache.get(registry_key(registry, "linear"))
        original = runtime.predict

        def spy(inputs: dict[str, Array]) -> dict[str, Array]:
            threads.append(threading.current_thread().name)
            return original(inputs)

        runtime.predict = spy  # type: ignore[method-assign]
        x = {"input": np.ones((1, 20), np.float32)}
        for _ in range(3):
            await dp.infer("linear", None, InferRequest(x), RequestContext())

    try:
        asyncio.run(main())
    finally:
        cache.close()
        dp.close()
    assert threads[0].startswith("modelyard-infer")  # unknown duration: a thread
    assert threads[1:] == [threading.main_thread().name] * 2  # then inline


def registry_key(registry: Registry, name: str) -> CacheKey:
    mv = registry.resolve(name)
    return CacheKey(mv.model, mv.version)
