"""Length bucketing: the pure decisions (table-driven) and the batcher grouping by bucket."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Hashable, Iterator, Mapping

import numpy as np
import pytest

from modelyard.core.batch_policy import (
    BatchConfig,
    length_bucket,
    padding_efficiency,
    pick_batch,
)
from modelyard.core.batcher import Batcher
from modelyard.errors import InvalidInputError
from modelyard.types import Array


@pytest.mark.parametrize(
    ("tokens", "smallest", "largest", "bucket"),
    [
        (0, 8, None, 8),  # empty text still has a bucket
        (1, 8, None, 8),
        (8, 8, None, 8),
        (9, 8, None, 16),
        (16, 8, None, 16),
        (17, 8, None, 32),
        (100, 8, None, 128),
        (128, 8, 128, 128),
        (300, 8, 128, 128),  # truncated sequences share the last bucket
        (5, 1, None, 8),
        (3, 1, None, 4),
        (1, 1, None, 1),
        (40, 8, 48, 48),  # a truncation length that is no power of two caps the bucket
    ],
)
def test_length_bucket(tokens: int, smallest: int, largest: int | None, bucket: int) -> None:
    assert length_bucket(tokens, smallest=smallest, largest=largest) == bucket


@pytest.mark.parametrize(
    ("rows", "keys", "limit", "picked"),
    [
        ([], [], 8, []),
        ([1, 1, 1], ["a", "a", "a"], 8, [0, 1, 2]),
        ([1, 1, 1, 1], ["a", "b", "a", "b"], 8, [0, 2]),  # other buckets are skipped, not a wall
        ([1, 1, 1], ["b", "a", "a"], 8, [0]),  # the head's bucket leads
        ([4, 4, 1], ["a", "a", "a"], 8, [0, 1]),  # the third would overflow
        ([4, 1, 4, 1], ["a", "b", "a", "a"], 8, [0, 2]),  # stop at the first that overflows:
        # FIFO within a bucket
        ([10, 1], ["a", "a"], 8, [0]),  # an oversized head still runs, alone
        ([1] * 5, [None] * 5, 3, [0, 1, 2]),  # no bucket at all: plain size limit
    ],
)
def test_pick_batch(rows: list[int], keys: list[Hashable], limit: int, picked: list[int]) -> None:
    assert pick_batch(rows, keys, limit) == picked


@pytest.mark.parametrize(
    ("real", "padded", "efficiency"),
    [(0, 0, 1.0), (12, 16, 0.75), (5, 5, 1.0), (1, 128, 1 / 128)],
)
def test_padding_efficiency(real: int, padded: int, efficiency: float) -> None:
    assert padding_efficiency(real, padded) == pytest.approx(efficiency)


# ---- the batcher groups by bucket --------------------------------------------------------------
def texts(*values: str) -> dict[str, Array]:
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return {"text": arr}


def bucket_of(inputs: Mapping[str, Array]) -> Hashable | None:
    return length_bucket(max(len(str(t)) for t in inputs["text"]), smallest=4)


class Model:
    """Echoes the text lengths; records each batch; the first call can be held on a gate."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        self.gate.wait(timeout=10)
        self.batches.append([str(t) for t in inputs["text"]])
        return {"n": np.array([len(str(t)) for t in inputs["text"]])}


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    ex = concurrent.futures.ThreadPoolExecutor(2)
    yield ex
    ex.shutdown()


def test_batches_hold_one_bucket_and_everyone_gets_their_row(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    model = Model()
    model.gate.clear()
    batcher = Batcher(
        model.predict, BatchConfig(max_batch_size=8), executor=executor, bucket=bucket_of
    )
    words = ["x" * n for n in (3, 20, 2, 30, 4, 6, 25, 1, 7)]

    async def main() -> list[dict[str, Array]]:
        first = asyncio.ensure_future(batcher.submit(texts("hold")))
        await asyncio.sleep(0)  # the first batch starts and blocks on the gate
        rest = [asyncio.ensure_future(batcher.submit(texts(w))) for w in words]
        await asyncio.sleep(0)
        model.gate.set()
        return await asyncio.gather(first, *rest)

    results = asyncio.run(main())
    assert [int(r["n"][0]) for r in results] == [4, *(len(w) for w in words)]
    lengths = [[len(t) for t in batch] for batch in model.batches]
    # queued: 3 20 2 30 4 6 25 1 7 -> buckets 4 32 4 32 4 8 32 4 8, each batch led by the oldest
    assert lengths == [[4], [3, 2, 4, 1], [20, 30, 25], [6, 7]]


def test_bad_input_found_by_the_bucket_is_rejected_before_queueing(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    def strict(inputs: Mapping[str, Array]) -> Hashable | None:
        raise InvalidInputError("input 'text': not valid UTF-8")

    model = Model()
    batcher = Batcher(model.predict, BatchConfig(), executor=executor, bucket=strict)

    async def main() -> None:
        with pytest.raises(InvalidInputError, match="not valid UTF-8"):
            await batcher.submit(texts("a"))

    asyncio.run(main())
    assert model.batches == []
    assert batcher.stats.requests == 0


def test_a_failing_bucket_function_only_loses_the_grouping(
    executor: concurrent.futures.ThreadPoolExecutor,
) -> None:
    def broken(inputs: Mapping[str, Array]) -> Hashable | None:
        raise RuntimeError("tokenizer hiccup")

    model = Model()
    batcher = Batcher(model.predict, BatchConfig(), executor=executor, bucket=broken)

    async def main() -> dict[str, Array]:
        return await batcher.submit(texts("abc"))

    assert asyncio.run(main())["n"].tolist() == [3]
