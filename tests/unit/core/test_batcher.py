"""The batcher mechanism: merged predict calls, identical outputs, errors, shedding."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from modelyard.core.batch_policy import BatchConfig
from modelyard.core.batcher import Batcher
from modelyard.core.clock import FakeClock
from modelyard.errors import InferenceError, InvalidInputError, UnavailableError
from modelyard.types import Array


class Model:
    """y = 2x + 1 per row; records the batch sizes it saw; can be held on a gate."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        self.gate.wait(timeout=10)
        x = inputs["x"]
        self.calls.append(x.shape[0])
        return {"y": x * 2 + 1, "s": x.sum(axis=1)}


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    ex = concurrent.futures.ThreadPoolExecutor(2)
    yield ex
    ex.shutdown()


def test_concurrent_requests_share_batches_and_get_their_own_rows(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    model = Model()
    model.gate.clear()
    batcher = Batcher(model.predict, BatchConfig(max_batch_size=64), executor=executor)
    xs = [np.full((1, 3), i, dtype=np.float32) for i in range(20)]

    async def main() -> list[dict[str, Array]]:
        first = asyncio.ensure_future(batcher.submit({"x": xs[0]}))
        await asyncio.sleep(0)  # let the first batch start and block on the gate
        rest = [asyncio.ensure_future(batcher.submit({"x": x})) for x in xs[1:]]
        await asyncio.sleep(0)
        model.gate.set()
        return await asyncio.gather(first, *rest)

    results = asyncio.run(main())
    for x, out in zip(xs, results, strict=True):
        np.testing.assert_array_equal(out["y"], x * 2 + 1)
        np.testing.assert_array_equal(out["s"], x.sum(axis=1))
    # the first request ran alone; the 19 that queued behind it ran as one batch
    assert model.calls == [1, 19]
    assert batcher.stats.batches == 2
    assert batcher.stats.rows == 20


def test_batched_and_unbatched_outputs_are_identical(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(int(rng.integers(1, 4)), 5)).astype(np.float32) for _ in range(30)]
    model = Model()
    batched = Batcher(model.predict, BatchConfig(max_batch_size=16), executor=executor)
    single = Batcher(model.predict, BatchConfig(max_batch_size=1), executor=executor)

    async def run(b: Batcher) -> list[dict[str, Array]]:
        return await asyncio.gather(*(b.submit({"x": x}) for x in xs))

    a = asyncio.run(run(batched))
    b = asyncio.run(run(single))
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ra["y"], rb["y"])
    assert single.stats.batches == 30
    assert batched.stats.batches < 30


def test_incompatible_shapes_run_in_separate_batches(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    model = Model()
    batcher = Batcher(model.predict, BatchConfig(max_batch_size=64), executor=executor)

    async def main() -> list[dict[str, Array]]:
        return await asyncio.gather(
            batcher.submit({"x": np.ones((1, 3), np.float32)}),
            batcher.submit({"x": np.ones((1, 4), np.float32)}),
        )

    out = asyncio.run(main())
    assert out[0]["y"].shape == (1, 3)
    assert out[1]["y"].shape == (1, 4)


def test_predict_error_reaches_every_caller_and_batcher_keeps_working(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    calls = {"n": 0}

    def flaky(inputs: Mapping[str, Array]) -> dict[str, Array]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return {"y": inputs["x"]}

    batcher = Batcher(flaky, BatchConfig(max_batch_size=8), executor=executor, name="m:1")

    async def main() -> None:
        with pytest.raises(InferenceError, match="'m:1' failed: RuntimeError: boom"):
            await batcher.submit({"x": np.ones((1, 2))})
        out = await batcher.submit({"x": np.ones((1, 2))})
        assert out["y"].shape == (1, 2)

    asyncio.run(main())


def test_request_past_its_deadline_is_shed_not_run(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    clock = FakeClock()
    model = Model()
    batcher = Batcher(model.predict, BatchConfig(), executor=executor, clock=clock)

    async def main() -> None:
        with pytest.raises(UnavailableError, match="deadline"):
            await batcher.submit({"x": np.ones((1, 2))}, deadline=clock.monotonic() - 0.001)
        ok = await batcher.submit({"x": np.ones((1, 2))}, deadline=clock.monotonic() + 5)
        assert ok["y"].shape == (1, 2)

    asyncio.run(main())
    assert model.calls == [1]
    assert batcher.stats.shed == 1


def test_full_queue_rejects_with_unavailable(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    model = Model()
    model.gate.clear()
    batcher = Batcher(
        model.predict, BatchConfig(max_batch_size=4, max_queue_rows=2), executor=executor
    )

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2))}))
        await asyncio.sleep(0)
        queued = [asyncio.ensure_future(batcher.submit({"x": np.ones((1, 2))})) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(UnavailableError, match="overloaded"):
            await batcher.submit({"x": np.ones((1, 2))})
        model.gate.set()
        await asyncio.gather(first, *queued)

    asyncio.run(main())


def test_mismatched_first_dims_are_invalid(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    batcher = Batcher(lambda i: dict(i), BatchConfig(), executor=executor)

    async def main() -> None:
        await batcher.submit({"a": np.ones((2, 1)), "b": np.ones((3, 1))})

    with pytest.raises(InvalidInputError, match="same first dimension"):
        asyncio.run(main())


def test_a_request_with_no_rows_is_refused_not_queued_forever(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    batcher = Batcher(Model().predict, BatchConfig(max_batch_size=8), executor=executor)

    async def main() -> None:
        with pytest.raises(InvalidInputError, match="no rows"):
            await asyncio.wait_for(batcher.submit({"x": np.zeros((0, 3), np.float32)}), 10)

    asyncio.run(main())
    assert batcher.stats.requests == 0
