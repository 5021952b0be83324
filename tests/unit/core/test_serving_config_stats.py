"""model_config and model_statistics of the serving dataplane over a real registry and model
cache, in-process, with a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelyard.app import build_app, make_loader
from modelyard.core.clock import FakeClock
from modelyard.core.model_cache import ModelCache
from modelyard.core.serving import EXTENSIONS, ServingDataPlane
from modelyard.errors import InvalidInputError, ModelNotFoundError
from modelyard.registry.registry import Registry
from modelyard.runtime import RuntimeOptions
from modelyard.settings import Settings
from modelyard.types import Array, ConfigTensor, Datatype, InferRequest, RequestContext
from tests.testmodels import identity_model, linear_fp32_model, simple_model


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "reg")
    reg.push(simple_model(tmp_path / "m" / "simple.onnx"), name="simple", alias="production")
    reg.push(simple_model(tmp_path / "m" / "simple.onnx"), name="simple")  # 2, not production
    reg.push(identity_model(Datatype.BYTES, tmp_path / "m" / "b.onnx"), name="identity_bytes")
    linear = linear_fp32_model(tmp_path / "m" / "linear.onnx")
    # Waits no time for a batch to fill: the fake clock never moves by itself.
    reg.push(linear, name="linear_batched", batching={"max_batch_size": 16})
    reg.push(linear, name="linear_waits", batching={"max_batch_size": 8, "max_wait_us": 700})
    yield reg
    reg.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall_start=1_700_000_000.0)


@pytest.fixture
def dataplane(registry: Registry, clock: FakeClock) -> Iterator[ServingDataPlane]:
    cache = ModelCache(make_loader(registry, RuntimeOptions()), budget_bytes=1 << 30, clock=clock)
    dp = ServingDataPlane(registry, cache, resolve_ttl_s=0.0, clock=clock, inference_threads=3)
    yield dp
    cache.close()
    dp.close()


def simple_inputs(rows: int = 1) -> dict[str, Array]:
    ones = np.ones((rows, 16), dtype=np.int32)
    return {"INPUT0": ones, "INPUT1": ones}


async def call(
    dp: ServingDataPlane, name: str, inputs: dict[str, Array], version: str | None = None
) -> bool:
    """One request; True when it succeeded."""
    try:
        await dp.infer(name, version, InferRequest(inputs=inputs), RequestContext())
    except Exception:
        return False
    return True


def test_server_metadata_lists_the_extensions() -> None:
    assert {"statistics", "model_configuration"} <= set(EXTENSIONS)


# ---- configuration ----------------------------------------------------------------------------
def test_config_of_an_unbatched_version(dataplane: ServingDataPlane) -> None:
    config = asyncio.run(dataplane.model_config("simple"))
    assert (config.name, config.version, config.platform) == ("simple", "1", "onnx")
    assert config.max_batch_size == 0 and config.max_queue_delay_us is None
    assert config.inputs == (
        ConfigTensor("INPUT0", Datatype.INT32, (-1, 16)),
        ConfigTensor("INPUT1", Datatype.INT32, (-1, 16)),
    )
    assert config.instance_count == 3
    assert asyncio.run(dataplane.model_config("simple", "2")).version == "2"


def test_config_of_a_batched_version(dataplane: ServingDataPlane) -> None:
    config = asyncio.run(dataplane.model_config("linear_waits"))
    assert (config.max_batch_size, config.max_queue_delay_us) == (8, 700)
    assert config.inputs == (ConfigTensor("input", Datatype.FP32, (20,)),)
    assert config.outputs == (ConfigTensor("output", Datatype.FP32, (1,)),)


def test_config_of_bytes_tensors(dataplane: ServingDataPlane) -> None:
    config = asyncio.run(dataplane.model_config("identity_bytes"))
    assert config.inputs[0].datatype is Datatype.BYTES


@pytest.mark.parametrize(("name", "version"), [("nope", None), ("simple", "9")])
def test_config_of_unknown_model_or_version(
    dataplane: ServingDataPlane, name: str, version: str | None
) -> None:
    with pytest.raises(ModelNotFoundError):
        asyncio.run(dataplane.model_config(name, version))


# ---- statistics -------------------------------------------------------------------------------
def test_a_named_model_lists_its_served_version_with_zeros(dataplane: ServingDataPlane) -> None:
    (stats,) = asyncio.run(dataplane.model_statistics("simple"))
    assert (stats.name, stats.version) == ("simple", "1")
    assert (stats.success.count, stats.fail.count, stats.last_inference_ms) == (0, 0, 0)


def test_successes_and_failures_through_the_dataplane(
    dataplane: ServingDataPlane, clock: FakeClock
) -> None:
    async def run() -> list[bool]:
        outcomes = [await call(dataplane, "simple", simple_inputs(2)) for _ in range(3)]
        clock.advance(4.0)
        bad = {"INPUT0": np.ones((1, 3), dtype=np.int32)}  # wrong shape, missing input
        outcomes += [await call(dataplane, "simple", bad) for _ in range(2)]
        return outcomes

    assert asyncio.run(run()) == [True] * 3 + [False] * 2
    (stats,) = asyncio.run(dataplane.model_statistics("simple"))
    assert (stats.success.count, stats.fail.count) == (3, 2)
    # "simple" does not batch (max_batch_size 0): a request is one inference, and an execution
    # of batch size 1, whatever its rows (2 here).
    assert stats.inference_count == 3
    assert stats.execution_count == 3
    assert stats.queue.count == stats.compute_infer.count == 3
    assert [(b.batch_size, b.compute_infer.count) for b in stats.batch_stats] == [(1, 3)]
    assert stats.last_inference_ms == 1_700_000_004_000


def test_versions_with_counts_are_listed_next_to_the_served_one(
    dataplane: ServingDataPlane,
) -> None:
    assert asyncio.run(call(dataplane, "simple", simple_inputs(), version="2"))
    listed = asyncio.run(dataplane.model_statistics("simple"))
    assert [(s.version, s.success.count) for s in listed] == [("1", 0), ("2", 1)]
    (only,) = asyncio.run(dataplane.model_statistics("simple", "2"))
    assert (only.version, only.success.count) == ("2", 1)
    (by_alias,) = asyncio.run(dataplane.model_statistics("simple", "production"))
    assert by_alias.version == "1"


def test_every_model(dataplane: ServingDataPlane) -> None:
    listed = asyncio.run(dataplane.model_statistics())
    assert [(s.name, s.version) for s in listed] == [
        ("identity_bytes", "1"),
        ("linear_batched", "1"),
        ("linear_waits", "1"),
        ("simple", "1"),
    ]


@pytest.mark.parametrize(
    ("name", "version", "error"),
    [
        ("nope", None, ModelNotFoundError),
        ("simple", "9", ModelNotFoundError),
        (None, "1", InvalidInputError),
    ],
)
def test_statistics_errors(
    dataplane: ServingDataPlane, name: str | None, version: str | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        asyncio.run(dataplane.model_statistics(name, version))


@pytest.mark.parametrize(
    ("name", "rows", "inferences"),
    [
        # Batching off (the default): max_batch_size 0, one inference per request, and each
        # execution is of batch size 1.
        ("simple", 1, 1),
        ("simple", 5, 1),
        # Batching on: max_batch_size 16, each row is an inference and the batch size.
        ("linear_batched", 1, 1),
        ("linear_batched", 5, 5),  # through the batcher
        ("linear_batched", 16, 16),  # fills a batch by itself: runs at once
    ],
)
def test_inference_count_follows_the_reported_max_batch_size(
    dataplane: ServingDataPlane, name: str, rows: int, inferences: int
) -> None:
    """Triton's rule, against the configuration we report: with max_batch_size 0 a request
    counts once; with max_batch_size > 0 each of its rows counts. One execution either way,
    listed in batch_stats under the same batch size."""
    if name == "simple":
        inputs = simple_inputs(rows)
    else:
        inputs = {"input": np.ones((rows, 20), dtype=np.float32)}
    config = asyncio.run(dataplane.model_config(name))
    assert (config.max_batch_size > 0) == (name == "linear_batched")

    assert asyncio.run(call(dataplane, name, inputs))
    assert asyncio.run(call(dataplane, name, inputs))
    (stats,) = asyncio.run(dataplane.model_statistics(name))
    assert (stats.success.count, stats.inference_count) == (2, 2 * inferences)
    assert stats.execution_count == 2
    assert [(b.batch_size, b.compute_infer.count) for b in stats.batch_stats] == [(inferences, 2)]


def test_batched_requests_share_executions(dataplane: ServingDataPlane) -> None:
    rows = [np.full((1, 20), i, dtype=np.float32) for i in range(24)]

    async def run() -> list[bool]:
        return list(
            await asyncio.gather(*(call(dataplane, "linear_batched", {"input": r}) for r in rows))
        )

    assert all(asyncio.run(run()))
    (stats,) = asyncio.run(dataplane.model_statistics("linear_batched"))
    (_runtime, batcher) = next(iter(dataplane._batchers.values()))
    assert (stats.success.count, stats.inference_count) == (24, 24)
    assert stats.execution_count == batcher.stats.batches < 24
    assert stats.queue.count == stats.compute_infer.count == 24
    assert sum(b.batch_size * b.compute_infer.count for b in stats.batch_stats) == 24
    assert sum(b.compute_infer.count for b in stats.batch_stats) == stats.execution_count


def test_build_app_feeds_the_statistics_it_serves(tmp_path: Path) -> None:
    settings = Settings.model_construct(registry=str(tmp_path / "reg"))
    app = build_app(settings, features=False)
    try:
        assert app.serving.statistics in app.observers.observers
    finally:
        app.close()


def test_a_dataplane_built_alone_still_counts(registry: Registry, clock: FakeClock) -> None:
    cache = ModelCache(make_loader(registry, RuntimeOptions()), budget_bytes=1 << 30, clock=clock)
    dp = ServingDataPlane(registry, cache, clock=clock)  # no statistics given
    try:
        assert asyncio.run(call(dp, "simple", simple_inputs()))
        (stats,) = asyncio.run(dp.model_statistics("simple"))
        assert stats.success.count == 1
    finally:
        cache.close()
        dp.close()
